"""Auto-recharge: when a charge takes the balance below the user's threshold, charge the saved card.

- The trigger is judged on the before and after of the wallet UPDATE that spent the money
  (billing.ledger calls notice_drop), so of many concurrent charges exactly one crosses.
- After that transaction commits, `start_auto_recharge` records the attempt (a Recharge row) in
  one transaction that locks the user's settings, refuses a second recharge in flight (a unique
  constraint says so too) and checks the monthly cap.
- `charge_auto_recharge` then creates an off-session PaymentIntent whose idempotency key is the
  row's uuid: a task retried after any crash gets Stripe's first answer, never a second charge.
- The balance is credited only from Stripe's payment_intent.succeeded webhook
  (billing.topups.book_recharge_payment). A declined card or one that needs its holder turns
  auto-recharge off, mails the user once (whichever of the task and the webhook learns it first
  wins a conditional UPDATE) and shows a banner until the user saves the settings again.

Stripe calls never run inside a database transaction. This module does not import billing.ledger:
the ledger calls into it.
"""

import logging
from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import Decimal

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from . import stripe
from .models import AutoRecharge, Recharge, StripeCustomer, Wallet

log = logging.getLogger(__name__)

MIN_THRESHOLD_USD = Decimal("1")
Status = Recharge.Status


def idempotency_key_of(recharge: Recharge) -> str:
    """The same row always sends the same key; no other row, in this deployment or another one on
    the same Stripe account, ever does (the row's uuid, after STRIPE_IDEMPOTENCY_PREFIX if set)."""
    prefix = f"{settings.STRIPE_IDEMPOTENCY_PREFIX}:" if settings.STRIPE_IDEMPOTENCY_PREFIX else ""
    return f"{prefix}auto-recharge:{recharge.uuid}"


def settings_of(*, user) -> AutoRecharge | None:
    return AutoRecharge.objects.filter(user=user).first()


def save_settings(*, user, enabled: bool, threshold: Decimal, amount: Decimal, monthly_cap: Decimal) -> AutoRecharge:
    """Store the user's choice (which also clears a banner about a stopped recharge)."""
    with transaction.atomic():
        rule, _ = AutoRecharge.objects.update_or_create(
            user=user,
            defaults={"enabled": enabled, "threshold": threshold, "amount": amount, "monthly_cap": monthly_cap,
                      "stopped_reason": ""},
        )
        arm(user_id=user.pk)
    return rule


def arm(*, user_id: int) -> Decimal | None:
    """Copy the threshold onto the wallet while auto-recharge is on and a card is saved (NULL
    otherwise), where the ledger's UPDATE reads it. The one definition of "armed". Armed (settings
    saved, a card stored) while the balance is already below the threshold recharges now: no
    crossing would come."""
    rule = AutoRecharge.objects.filter(user_id=user_id, enabled=True).first()
    has_card = StripeCustomer.objects.filter(user_id=user_id).exclude(payment_method_id="").exists()
    below = rule.threshold if rule is not None and has_card else None
    Wallet.objects.get_or_create(user_id=user_id)
    Wallet.objects.filter(user_id=user_id).update(auto_recharge_below=below)
    start_if_below(user_id=user_id)
    return below


def start_if_below(*, user_id: int) -> bool:
    """Queue a recharge after this transaction commits when auto-recharge is armed and the balance
    is below its threshold. For the moments no crossing can follow: auto-recharge just armed, or a
    recharge credited that left the balance below (a $5 recharge under a $10 threshold). Not for
    charges: those trigger on their crossing only. begin_recharge still applies every guard."""
    wallet = Wallet.objects.filter(user_id=user_id).values("balance", "auto_recharge_below").first()
    if wallet is None or wallet["auto_recharge_below"] is None or wallet["balance"] >= wallet["auto_recharge_below"]:
        return False
    transaction.on_commit(lambda: start_auto_recharge.delay(user_id=user_id), robust=True)
    return True


def notice_drop(*, user_id: int, before: Decimal, after: Decimal, below: Decimal | None) -> None:
    """Called by billing.ledger inside the booking transaction; starts a recharge after it commits."""
    if below is not None and before >= below > after:
        # robust: this runs after an image's charge committed; a broker hiccup must not turn it into a 500.
        transaction.on_commit(lambda: start_auto_recharge.delay(user_id=user_id), robust=True)


def begin_recharge(*, user_id: int, now: datetime | None = None) -> Recharge | None:
    """Record one attempt, or none: off, no card, balance back above, one in flight, or over the
    monthly cap (recorded as CAPPED for the admin). The charge is queued when this commits."""
    now = now or timezone.now()
    with transaction.atomic():
        # The lock serialises every start for this user: the cap sum below cannot go stale.
        rule = AutoRecharge.objects.select_for_update().filter(user_id=user_id, enabled=True).first()
        if rule is None:
            return None
        if not StripeCustomer.objects.filter(user_id=user_id).exclude(payment_method_id="").exists():
            return None
        balance = Wallet.objects.filter(user_id=user_id).values_list("balance", flat=True).first() or Decimal("0")
        if balance >= rule.threshold:
            return None
        if Recharge.objects.filter(user_id=user_id, status__in=Recharge.IN_FLIGHT).exists():
            return None
        month_start = now.astimezone(dt_timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        charged = Recharge.objects.filter(
            user_id=user_id, status__in=Recharge.COUNTS_AGAINST_CAP, created_at__gte=month_start
        ).aggregate(total=Sum("amount"))["total"] or Decimal("0")
        if charged + rule.amount > rule.monthly_cap:
            Recharge.objects.create(
                user_id=user_id, amount=rule.amount, status=Status.CAPPED, created_at=now, finished_at=now,
                failure_message=f"${charged:.2f} of the ${rule.monthly_cap:.2f} monthly cap already charged",
            )
            return None
        recharge = Recharge.objects.create(user_id=user_id, amount=rule.amount, status=Status.PENDING, created_at=now)
        transaction.on_commit(lambda: charge_auto_recharge.delay(recharge_id=recharge.pk))
    return recharge


def charge_recharge(*, recharge_id: int) -> Recharge:
    """Charge the saved card for a recorded attempt and record Stripe's answer. Safe to repeat:
    an answered row is left alone, and an unanswered one sends the same idempotency key."""
    recharge = Recharge.objects.get(pk=recharge_id)
    if recharge.status != Status.PENDING:
        return recharge
    customer = StripeCustomer.objects.filter(user_id=recharge.user_id).first()
    if customer is None or not customer.has_card:
        record_failure(recharge_id=recharge.pk, payment_intent_id="", code="no_saved_card",
                       message="There is no saved card to charge.")
        return Recharge.objects.get(pk=recharge_id)
    answer = stripe.charge_saved_card(
        customer_id=customer.customer_id,
        payment_method_id=customer.payment_method_id,
        amount_cents=int((recharge.amount * 100).to_integral_exact()),
        metadata={"purpose": stripe.RECHARGE_PURPOSE, "user_id": str(recharge.user_id),
                  "recharge_id": str(recharge.pk)},
        idempotency_key=idempotency_key_of(recharge),
    )
    record_answer(recharge_id=recharge.pk, answer=answer)
    return Recharge.objects.get(pk=recharge_id)


def record_answer(*, recharge_id: int, answer: stripe.OffSessionPayment) -> None:
    if answer.failure_code:
        record_failure(recharge_id=recharge_id, payment_intent_id=answer.payment_intent_id,
                       code=answer.failure_code, message=answer.failure_message)
        return
    # Conditional: the webhook may already have booked it (SUCCEEDED) before this runs.
    Recharge.objects.filter(pk=recharge_id, status=Status.PENDING).update(
        status=Status.PROCESSING, payment_intent_id=answer.payment_intent_id
    )


def record_failure(*, recharge_id: int, payment_intent_id: str, code: str, message: str) -> bool:
    """Mark the attempt failed and turn auto-recharge off, once: True for the caller that did it
    (the task's answer and the payment_failed webhook both report the same failure)."""
    now = timezone.now()
    fields = {"status": Status.FAILED, "failure_code": code[:100], "failure_message": message[:255], "finished_at": now}
    if payment_intent_id:
        fields["payment_intent_id"] = payment_intent_id
    with transaction.atomic():
        won = Recharge.objects.filter(pk=recharge_id, status__in=Recharge.IN_FLIGHT).update(**fields)
        if not won:
            return False
        recharge = Recharge.objects.get(pk=recharge_id)
        AutoRecharge.objects.filter(user_id=recharge.user_id).update(
            enabled=False, stopped_reason=stopped_reason(code=code, amount=recharge.amount)
        )
        arm(user_id=recharge.user_id)
        transaction.on_commit(
            lambda: send_auto_recharge_stopped.delay(user_id=recharge.user_id, recharge_id=recharge.pk), robust=True
        )
    return True


def stop_for_dispute(*, user_id: int, dispute_id: str) -> bool:
    """The card holder disputes a payment to us: charging their card again unasked would be wrong.
    Turns auto-recharge off and mails the user, once: True for the caller that did it (a dispute's
    created and funds_withdrawn events both come here, as may a redelivery)."""
    with transaction.atomic():
        stopped = AutoRecharge.objects.filter(user_id=user_id, enabled=True).update(
            enabled=False,
            stopped_reason=(f"Auto-recharge is now off: a payment to us is disputed ({dispute_id})."
                            f" Turn it back on once the dispute is settled.")[:255],
        )
        if not stopped:
            return False
        arm(user_id=user_id)
        transaction.on_commit(lambda: send_auto_recharge_stopped.delay(user_id=user_id), robust=True)
    return True


def stopped_reason(*, code: str, amount: Decimal) -> str:
    if code in ("authentication_required", "payment_intent_authentication_failure"):
        why = "your card needs you to confirm each payment"
    elif code == "no_saved_card":
        why = "there is no saved card"
    elif code == "stripe_unavailable":
        why = "our payment provider could not be reached"
    elif code == stripe.INVALID_REQUEST:
        why = "our payment provider refused to charge the saved card (it may have been removed)"
    else:
        why = "your card was declined"
    return f"Auto-recharge of ${amount:.2f} failed and is now off: {why}. Update your card and turn it back on."


def banner_for(user) -> str:
    """The warning every page shows after we switched auto-recharge off; empty otherwise."""
    return AutoRecharge.objects.filter(user=user).values_list("stopped_reason", flat=True).first() or ""


@shared_task(name="billing.autorecharge.start", autoretry_for=(OSError,), retry_backoff=5, max_retries=5)
def start_auto_recharge(*, user_id: int) -> int | None:
    recharge = begin_recharge(user_id=user_id)
    return recharge.pk if recharge else None


@shared_task(bind=True, name="billing.autorecharge.charge", autoretry_for=(OSError,), retry_backoff=10,
             max_retries=8)
def charge_auto_recharge(self, *, recharge_id: int) -> str:
    try:
        return charge_recharge(recharge_id=recharge_id).status
    except stripe.StripeUnavailable as exc:
        # The row stays PENDING and the retry sends the same idempotency key; Stripe keeps keys for
        # 24 hours and these retries end within about an hour.
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=min(600, 10 * 2**self.request.retries)) from exc
        # Giving up must not leave a PENDING row blocking every later recharge. Should Stripe have
        # charged after all, its payment_intent.succeeded webhook still credits the money.
        record_failure(recharge_id=recharge_id, payment_intent_id="", code="stripe_unavailable",
                       message=f"Stripe could not be reached: {exc}")
        return Recharge.objects.get(pk=recharge_id).status


@shared_task(name="billing.autorecharge.send_stopped", autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def send_auto_recharge_stopped(*, user_id: int, recharge_id: int | None = None) -> None:
    """The one e-mail about auto-recharge we switched off: a failed attempt (recharge_id), or else
    the stopped reason on the user's settings (a dispute)."""
    user = get_user_model().objects.get(pk=user_id)
    base = settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000"
    if recharge_id is None:
        body = (
            f"{banner_for(user)}\n\nNothing more will be charged to your saved card until you turn auto-recharge "
            f"back on: {base}/billing/#auto-recharge\n"
        )
        send_mail("Your AnimeAPI auto-recharge is off", body, None, [user.email])
        return
    recharge = Recharge.objects.get(pk=recharge_id)
    body = (
        f"We tried to add ${recharge.amount:.2f} to your AnimeAPI balance with your saved card, and the "
        f"payment did not go through ({recharge.failure_message or recharge.failure_code}).\n\n"
        f"Auto-recharge is now off, so nothing more will be tried. Update your card and turn it back on: "
        f"{base}/billing/#auto-recharge\n"
    )
    send_mail("Your AnimeAPI auto-recharge failed", body, None, [user.email])
