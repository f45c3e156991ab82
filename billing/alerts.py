"""Low-balance e-mails: one when the balance falls below the owner's threshold, one when it can
no longer pay for an image. One per crossing: a drop is judged on the before and after of a
single wallet UPDATE, so concurrent charges cannot both cross, and topping up re-arms it."""

from decimal import Decimal

from django.db import transaction

from .models import Wallet
from .pricing import can_afford_an_image
from .tasks import send_balance_alert


def crossings(*, before: Decimal, after: Decimal, threshold: Decimal | None) -> list[str]:
    crossed = []
    if threshold is not None and before >= threshold > after:
        crossed.append("low")
    if can_afford_an_image(before) and not can_afford_an_image(after):
        crossed.append("empty")
    return crossed


def notice_drop(*, user_id: int, before: Decimal, after: Decimal, threshold: Decimal | None) -> None:
    """Called by billing.ledger inside the booking transaction; mails after it commits. robust: the
    charge of an image has committed by then, and a broker hiccup must not turn it into a 500."""
    for kind in crossings(before=before, after=after, threshold=threshold):
        transaction.on_commit(
            lambda kind=kind: send_balance_alert.delay(user_id=user_id, kind=kind, balance=str(after)), robust=True
        )


def set_threshold(*, user, threshold: Decimal | None) -> None:
    # A setting, not money: the wallet row exists from the first ledger entry on.
    Wallet.objects.get_or_create(user=user)
    Wallet.objects.filter(user=user).update(low_balance_threshold=threshold)


def threshold_of(*, user) -> Decimal | None:
    return Wallet.objects.filter(user=user).values_list("low_balance_threshold", flat=True).first()


def banner_for(user) -> str:
    """The warning every page shows while the balance is low; empty when it is not."""
    wallet = Wallet.objects.filter(user=user).values("balance", "low_balance_threshold").first()
    balance = wallet["balance"] if wallet else Decimal("0")
    if not can_afford_an_image(balance):
        return f"Your balance (${balance:.2f}) is too low for another image: API calls answer 402 until you add funds."
    if wallet["low_balance_threshold"] is not None and balance < wallet["low_balance_threshold"]:
        return f"Your balance (${balance:.2f}) is below your ${wallet['low_balance_threshold']:.2f} alert."
    return ""
