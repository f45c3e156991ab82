"""Stripe top-ups: starting a Checkout payment, and booking what Stripe reports about it afterwards.

Every movement of money goes through billing.ledger with a Stripe object id as its reference, so
however often Stripe repeats itself (replays, the same object under new event ids, concurrent
deliveries, the reconcile command), each cent is booked once:
- a paid Checkout Session: TOPUP, reference = the session id
- a refund of its charge: PAYMENT_REFUND, reference = the refund id
- a dispute: DISPUTE, reference = the dispute id; a won dispute: DISPUTE_WON, "<dispute id>:won"

The functions take Stripe objects as plain dicts (from a webhook event or billing.stripe) and
return a Result for the event log. Stripe calls never run inside a database transaction.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from . import ledger, stripe
from .models import AccountFlag, StripeEvent, TopUp

log = logging.getLogger(__name__)

Outcome = StripeEvent.Outcome
PRESET_AMOUNTS_USD = (Decimal("5"), Decimal("10"), Decimal("25"), Decimal("50"))
# A refund takes the money while pending or once succeeded; a failed or canceled one took none.
REFUND_STATUSES_THAT_TAKE_MONEY = ("pending", "succeeded")


@dataclass(frozen=True)
class Result:
    """What handling one Stripe object came to: a StripeEvent outcome and a line for the admin."""

    outcome: str
    detail: str


@dataclass
class ReconcileReport:
    checked: int = 0
    booked: int = 0
    already_booked: int = 0
    not_ours: int = 0
    receipts_filled: int = 0


def preset_amounts() -> list[Decimal]:
    """The one-click amounts the configured limits allow."""
    low, high = settings.STRIPE_MIN_TOPUP_USD, settings.STRIPE_MAX_TOPUP_USD
    return [amount for amount in PRESET_AMOUNTS_USD if low <= amount <= high]


def usd_from_cents(cents: int) -> Decimal:
    return Decimal(int(cents)) / 100


def cents_from_usd(amount: Decimal) -> int:
    return int((amount * 100).to_integral_exact())


def start_topup(
    *, user, amount: Decimal, request_token: uuid.UUID, success_url: str, cancel_url: str
) -> stripe.CheckoutSession:
    """Create the Checkout Session and remember it. A resubmitted form (same token) gets the same session."""
    amount_cents = cents_from_usd(amount)
    session = stripe.create_checkout_session(
        user_id=user.pk,
        email=user.email,
        amount_cents=amount_cents,
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=f"topup:{user.pk}:{request_token}:{amount_cents}",
    )
    # get_or_create: a resubmission returns the same session, and a webhook may have recorded it first.
    TopUp.objects.get_or_create(checkout_session_id=session.id, defaults={"user": user, "amount": amount})
    return session


def book_paid_session(*, session: dict) -> Result:
    """Credit a paid Checkout Session once (checkout.session.completed / async_payment_succeeded)."""
    if session.get("payment_status") != "paid":
        return _record_session_awaiting_payment(session)
    if session.get("currency") != "usd":
        return Result(Outcome.IGNORED, f"currency {session.get('currency')!r} is not usd")
    topup = _topup_of_session(session)
    if topup is None:
        return Result(Outcome.IGNORED, "not a top-up of ours")
    amount = usd_from_cents(session["amount_total"])
    payment_intent_id = session.get("payment_intent") or topup.payment_intent_id
    try:
        # The credit and the top-up's new status land together or not at all.
        with transaction.atomic():
            ledger.credit(
                user=topup.user, amount=amount, kind=ledger.Kind.TOPUP,
                reference=session["id"], memo="Stripe top-up",
            )
            TopUp.objects.filter(pk=topup.pk).update(
                status=TopUp.Status.PAID, paid_at=timezone.now(), payment_intent_id=payment_intent_id
            )
    except ledger.DuplicateReference:
        return Result(Outcome.ALREADY_BOOKED, f"{session['id']} was already credited")
    _store_receipt_url(topup_id=topup.pk, payment_intent_id=payment_intent_id)
    return Result(Outcome.BOOKED, f"credited ${amount} to {topup.user} for {session['id']}")


def record_session_ended(*, session: dict, status: str) -> Result:
    """An async payment failed, or the session expired unpaid: no money, only the top-up's status."""
    topup = _topup_of_session(session)
    if topup is None:
        return Result(Outcome.IGNORED, "not a top-up of ours")
    # Conditional: a late "expired" or "failed" never overwrites a payment already booked.
    TopUp.objects.filter(pk=topup.pk, status__in=[TopUp.Status.PENDING, TopUp.Status.PROCESSING]).update(status=status)
    return Result(Outcome.RECORDED, f"{session['id']} {status}, nothing credited")


def book_charge_refunds(*, charge: dict) -> Result:
    """Debit every refund of a top-up's charge, each refund id once (charge.refunded)."""
    topup = _topup_of_payment_intent(charge.get("payment_intent") or "")
    if topup is None:
        return Result(Outcome.IGNORED, f"charge {charge.get('id')} is not from a top-up")
    if charge.get("receipt_url"):
        TopUp.objects.filter(pk=topup.pk, receipt_url="").update(receipt_url=charge["receipt_url"])
    booked, already_booked = [], []
    for refund in _refunds_in(charge):
        if refund.get("status") not in REFUND_STATUSES_THAT_TAKE_MONEY:
            continue
        amount = usd_from_cents(refund["amount"])
        try:
            ledger.debit(
                user=topup.user, amount=amount, kind=ledger.Kind.PAYMENT_REFUND,
                reference=refund["id"], memo=f"Stripe refund of {charge['id']}",
            )
        except ledger.DuplicateReference:
            already_booked.append(refund["id"])
        else:
            booked.append(f"{refund['id']} ${amount}")
    if booked:
        return Result(Outcome.BOOKED, f"debited {', '.join(booked)} from {topup.user}")
    if already_booked:
        return Result(Outcome.ALREADY_BOOKED, f"{', '.join(already_booked)} already debited")
    return Result(Outcome.RECORDED, "no refund that took money")


def book_dispute_opened(*, dispute: dict) -> Result:
    """Flag the account and take the disputed amount (charge.dispute.created, .funds_withdrawn)."""
    topup = _topup_of_dispute(dispute)
    if topup is None:
        return Result(Outcome.IGNORED, f"dispute {dispute['id']} is not on a top-up")
    _flag_account(topup=topup, dispute=dispute)
    if _is_inquiry(dispute):
        return Result(Outcome.RECORDED, f"inquiry {dispute['id']}: account flagged, no funds withdrawn")
    try:
        _debit_dispute(topup=topup, dispute=dispute)
    except ledger.DuplicateReference:
        return Result(Outcome.ALREADY_BOOKED, f"{dispute['id']} was already debited")
    return Result(Outcome.BOOKED, f"debited ${usd_from_cents(dispute['amount'])} from {topup.user}, account flagged")


def book_dispute_closed(*, dispute: dict) -> Result:
    """Close the flag; when we won, give the disputed amount back (charge.dispute.closed)."""
    topup = _topup_of_dispute(dispute)
    if topup is None:
        return Result(Outcome.IGNORED, f"dispute {dispute['id']} is not on a top-up")
    _flag_account(topup=topup, dispute=dispute)
    AccountFlag.objects.filter(reference=dispute["id"], closed_at__isnull=True).update(
        closed_at=timezone.now(), resolution=dispute.get("status", "")
    )
    if dispute.get("status") != "won":
        return Result(Outcome.RECORDED, f"dispute {dispute['id']} closed: {dispute.get('status')}")
    amount = usd_from_cents(dispute["amount"])
    try:
        with transaction.atomic():
            # Stripe does not promise event order: if "created" has not been booked yet, take the
            # amount now, so that a win nets to zero and the late "created" finds it booked.
            try:
                _debit_dispute(topup=topup, dispute=dispute)
            except ledger.DuplicateReference:
                pass
            ledger.credit(
                user=topup.user, amount=amount, kind=ledger.Kind.DISPUTE_WON,
                reference=f"{dispute['id']}:won", memo=f"Stripe dispute {dispute['id']} won",
            )
    except ledger.DuplicateReference:
        return Result(Outcome.ALREADY_BOOKED, f"{dispute['id']} win was already credited")
    return Result(Outcome.BOOKED, f"dispute won: credited ${amount} back to {topup.user}")


def reconcile_paid_sessions(*, since: datetime) -> ReconcileReport:
    """Book every paid Checkout Session since then that no webhook booked."""
    report = ReconcileReport()
    for session in stripe.completed_checkout_sessions(created_since=since):
        if session.get("payment_status") != "paid":
            continue
        report.checked += 1
        result = book_paid_session(session=session)
        if result.outcome == Outcome.BOOKED:
            report.booked += 1
            log.info("reconcile: %s", result.detail)
        elif result.outcome == Outcome.ALREADY_BOOKED:
            report.already_booked += 1
            report.receipts_filled += _fill_missing_receipt_url(session)
        else:
            report.not_ours += 1
    return report


def _record_session_awaiting_payment(session: dict) -> Result:
    topup = _topup_of_session(session)
    if topup is None:
        return Result(Outcome.IGNORED, "not a top-up of ours")
    TopUp.objects.filter(pk=topup.pk, status=TopUp.Status.PENDING).update(status=TopUp.Status.PROCESSING)
    return Result(Outcome.RECORDED, f"{session['id']} is {session.get('payment_status')}: waiting for the payment")


def _topup_of_session(session: dict) -> TopUp | None:
    """Our record of the session, or a new one when the session carries our metadata but we never
    stored it (the process stopped between creating the session and saving the row)."""
    topup = TopUp.objects.select_related("user").filter(checkout_session_id=session["id"]).first()
    if topup is not None:
        return topup
    metadata = session.get("metadata") or {}
    if metadata.get("purpose") != stripe.TOPUP_PURPOSE or not session.get("amount_total"):
        return None
    user_id = str(metadata.get("user_id", ""))
    if not user_id.isdigit() or session.get("client_reference_id") not in (None, user_id):
        return None
    user = get_user_model().objects.filter(pk=int(user_id)).first()
    if user is None:
        return None
    topup, _ = TopUp.objects.select_related("user").get_or_create(
        checkout_session_id=session["id"],
        defaults={
            "user": user,
            "amount": usd_from_cents(session["amount_total"]),
            "created_at": datetime.fromtimestamp(session.get("created") or timezone.now().timestamp(), dt_timezone.utc),
        },
    )
    return topup


def _topup_of_payment_intent(payment_intent_id: str) -> TopUp | None:
    if not payment_intent_id:
        return None
    topup = TopUp.objects.select_related("user").filter(payment_intent_id=payment_intent_id).first()
    if topup is not None or not stripe.is_configured():
        return topup
    # A charge event can come before its session's event: ask Stripe which session it paid.
    session = stripe.checkout_session_of_payment_intent(payment_intent_id=payment_intent_id)
    topup = _topup_of_session(session) if session else None
    if topup is not None:
        TopUp.objects.filter(pk=topup.pk, payment_intent_id="").update(payment_intent_id=payment_intent_id)
    return topup


def _topup_of_dispute(dispute: dict) -> TopUp | None:
    payment_intent_id = dispute.get("payment_intent") or ""
    if not payment_intent_id and dispute.get("charge") and stripe.is_configured():
        payment_intent_id = stripe.payment_intent_of_charge(charge_id=dispute["charge"])
    return _topup_of_payment_intent(payment_intent_id)


def _refunds_in(charge: dict) -> list[dict]:
    # Events rendered for API versions before 2022-11-15 carry the refunds; newer ones don't.
    refunds = charge.get("refunds")
    if isinstance(refunds, dict) and not refunds.get("has_more"):
        return refunds.get("data") or []
    return stripe.refunds_of_charge(charge_id=charge["id"])


def _is_inquiry(dispute: dict) -> bool:
    # Inquiries (warning_* statuses) are questions from the card issuer: no funds are withdrawn.
    return str(dispute.get("status", "")).startswith("warning_")


def _debit_dispute(*, topup: TopUp, dispute: dict) -> None:
    ledger.debit(
        user=topup.user, amount=usd_from_cents(dispute["amount"]), kind=ledger.Kind.DISPUTE,
        reference=dispute["id"], memo=f"Stripe dispute {dispute['id']} ({dispute.get('reason', 'unknown')})",
    )


def _flag_account(*, topup: TopUp, dispute: dict) -> None:
    AccountFlag.objects.get_or_create(
        reference=dispute["id"],
        defaults={
            "user": topup.user,
            "reason": AccountFlag.Reason.DISPUTE,
            "detail": f"{dispute.get('reason', 'unknown')} on {dispute.get('charge', '')}"[:255],
        },
    )


def _fill_missing_receipt_url(session: dict) -> int:
    topup = TopUp.objects.filter(checkout_session_id=session["id"], receipt_url="").first()
    if topup is None:
        return 0
    payment_intent_id = topup.payment_intent_id or session.get("payment_intent") or ""
    return _store_receipt_url(topup_id=topup.pk, payment_intent_id=payment_intent_id)


def _store_receipt_url(*, topup_id: int, payment_intent_id: str) -> int:
    """How many top-ups got their receipt link (0 or 1)."""
    if not payment_intent_id or not stripe.is_configured():
        return 0
    try:
        receipt_url = stripe.receipt_url_of_payment_intent(payment_intent_id=payment_intent_id)
    except stripe.StripeUnavailable as exc:
        # The money is booked; a missing receipt link is filled by a refund's event or by reconcile.
        log.warning("could not fetch the receipt for %s: %s", payment_intent_id, exc)
        return 0
    if not receipt_url:
        return 0
    return TopUp.objects.filter(pk=topup_id, receipt_url="").update(receipt_url=receipt_url)
