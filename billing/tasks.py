from decimal import Decimal

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

# Auto-recharge's tasks live beside its logic; imported here so the worker's autodiscovery registers them.
from .autorecharge import charge_auto_recharge, send_auto_recharge_stopped, start_auto_recharge  # noqa: F401
from .stale_recharges import settle_stale_recharges_task  # noqa: F401

SUBJECTS = {
    "low": "Your AnimeAPI balance is running low",
    "empty": "Your AnimeAPI balance has run out",
}


@shared_task(name="billing.tasks.send_balance_alert", autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def send_balance_alert(*, user_id: int, kind: str, balance: str) -> None:
    user = get_user_model().objects.select_related("wallet").get(pk=user_id)
    base = settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000"
    amount = Decimal(balance).quantize(Decimal("0.01"))
    if kind == "low":
        body = (f"Your balance is ${amount}, below the ${user.wallet.low_balance_threshold:.2f} alert you set.\n\n"
                f"Add funds before your API calls start answering 402: {base}/billing/\n")
    else:
        body = (f"Your balance is ${amount}: not enough for another image "
                f"(${settings.ANIMEAPI_PRICE_USD} each). API calls now answer 402 INSUFFICIENT_BALANCE.\n\n"
                f"Add funds: {base}/billing/\n")
    send_mail(SUBJECTS[kind], body, None, [user.email])
