"""Stripe top-ups: starting a Checkout payment, and booking what Stripe reports about it afterwards.

Every movement of money goes through billing.ledger with a Stripe object id as its reference, so
however often Stripe repeats itself (replays, the same object under new event ids, concurrent
deliveries, the reconcile command), each cent is booked once:
- a paid Checkout Session: TOPUP, reference = the session id
- a refund of its charge: PAYMENT_REFUND, reference = the refund id
- a dispute: DISPUTE, reference = the dispute id; a won dispute: DISPUTE_WON, "<dispute id>:won"
- a succeeded auto-recharge (billing.autorecharge): AUTO_RECHARGE, reference = the payment intent id;
  its refunds and disputes are booked exactly like a top-up's

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

from . import autorecharge, cards, ledger, stripe
from .models import AccountFlag, Recharge, StripeEvent, TopUp

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
    *, user, amount: Decimal, request_token: uuid.UUID, success_url: str, cancel_url: str, save_card: bool = False
) -> stripe.CheckoutSession:
    """Create the Checkout Session and remember it. A resubmitted form (same token) gets the same
    session. With save_card the card is kept on the user's Stripe Customer for auto-recharge."""
    amount_cents = cents_from_usd(amount)
    customer_id = cards.customer_of(user=user).customer_id if save_card else ""
    session = stripe.create_checkout_session(
        user_id=user.pk,
        email=user.email,
        amount_cents=amount_cents,
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=f"topup:{user.pk}:{request_token}:{amount_cents}" + (":save-card" if save_card else ""),
        save_card_for_customer=customer_id,
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
    saved = _save_card_of_paid_session(session=session, user=topup.user, payment_intent_id=payment_intent_id)
    return Result(Outcome.BOOKED, f"credited ${amount} to {topup.user} for {session['id']}{saved}")


def checkout_session_completed(*, session: dict) -> Result:
    """checkout.session.completed: a top-up paid, or (setup mode) a card entered to be saved."""
    if session.get("mode") == "setup":
        return save_card_of_setup_session(session=session)
    return book_paid_session(session=session)


def save_card_of_setup_session(*, session: dict) -> Result:
    """Store the card a setup-mode Checkout Session collected. No money moves."""
    metadata = session.get("metadata") or {}
    if metadata.get("purpose") != stripe.CARD_SETUP_PURPOSE or not session.get("setup_intent"):
        return Result(Outcome.IGNORED, "not a card setup of ours")
    user = _user_of_metadata(metadata, client_reference_id=session.get("client_reference_id"))
    if user is None:
        return Result(Outcome.IGNORED, "card setup for an unknown user")
    status, card = stripe.card_of_setup_intent(setup_intent_id=session["setup_intent"])
    if status != "succeeded" or card is None:
        return Result(Outcome.RECORDED, f"setup intent {session['setup_intent']} is {status or 'unknown'}: no card saved")
    if not cards.store_card(user=user, card=card):
        return Result(Outcome.IGNORED, f"{user} has no Stripe customer of ours")
    return Result(Outcome.RECORDED, f"saved {card.brand} ending {card.last4} for {user}")


def book_recharge_payment(*, payment_intent: dict) -> Result:
    """Credit a succeeded auto-recharge once (payment_intent.succeeded). Other intents (Checkout's
    own, anything else on the account) are ignored: top-ups are booked from their session."""
    recharge = _recharge_of_payment_intent(payment_intent)
    if recharge is None:
        return Result(Outcome.IGNORED, "not an auto-recharge of ours")
    if payment_intent.get("currency") != "usd" or payment_intent.get("status") != "succeeded":
        return Result(Outcome.IGNORED, f"{payment_intent['id']} is not a succeeded usd payment")
    # What Stripe took is what we credit (amount_received; older payloads and fakes have only amount).
    amount = usd_from_cents(payment_intent.get("amount_received") or payment_intent["amount"])
    try:
        with transaction.atomic():
            ledger.credit(
                user=recharge.user, amount=amount, kind=ledger.Kind.AUTO_RECHARGE,
                reference=payment_intent["id"], memo="Auto-recharge",
            )
            Recharge.objects.filter(pk=recharge.pk).update(
                status=Recharge.Status.SUCCEEDED, payment_intent_id=payment_intent["id"], finished_at=timezone.now()
            )
            # One recharge may not lift the balance above the threshold; no crossing would follow.
            autorecharge.start_if_below(user_id=recharge.user_id)
    except ledger.DuplicateReference:
        return Result(Outcome.ALREADY_BOOKED, f"{payment_intent['id']} was already credited")
    return Result(Outcome.BOOKED, f"auto-recharge: credited ${amount} to {recharge.user}")


def record_recharge_failure(*, payment_intent: dict) -> Result:
    """An auto-recharge's payment failed (payment_intent.payment_failed): switch it off, once."""
    recharge = _recharge_of_payment_intent(payment_intent)
    if recharge is None:
        return Result(Outcome.IGNORED, "not an auto-recharge of ours")
    error = payment_intent.get("last_payment_error") or {}
    stopped = autorecharge.record_failure(
        recharge_id=recharge.pk, payment_intent_id=payment_intent["id"],
        code=str(error.get("code") or "payment_failed"), message=str(error.get("message") or "The payment failed."),
    )
    # Already failed from the task's answer: keep the intent id for refunds, disputes and the admin.
    Recharge.objects.filter(pk=recharge.pk, payment_intent_id="").update(payment_intent_id=payment_intent["id"])
    if stopped:
        return Result(Outcome.RECORDED, f"auto-recharge {recharge.pk} failed: switched off, user told")
    return Result(Outcome.RECORDED, f"auto-recharge {recharge.pk} failure already recorded")


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
    payment_intent_id = charge.get("payment_intent") or ""
    user = _payer_of_payment_intent(payment_intent_id)
    if user is None:
        return Result(Outcome.IGNORED, f"charge {charge.get('id')} is not from a top-up")
    if charge.get("receipt_url"):
        TopUp.objects.filter(payment_intent_id=payment_intent_id, receipt_url="").update(
            receipt_url=charge["receipt_url"]
        )
    booked, already_booked = [], []
    for refund in _refunds_in(charge):
        if refund.get("status") not in REFUND_STATUSES_THAT_TAKE_MONEY:
            continue
        amount = usd_from_cents(refund["amount"])
        try:
            ledger.debit(
                user=user, amount=amount, kind=ledger.Kind.PAYMENT_REFUND,
                reference=refund["id"], memo=f"Stripe refund of {charge['id']}",
            )
        except ledger.DuplicateReference:
            already_booked.append(refund["id"])
        else:
            booked.append(f"{refund['id']} ${amount}")
    if booked:
        return Result(Outcome.BOOKED, f"debited {', '.join(booked)} from {user}")
    if already_booked:
        return Result(Outcome.ALREADY_BOOKED, f"{', '.join(already_booked)} already debited")
    return Result(Outcome.RECORDED, "no refund that took money")


def book_dispute_opened(*, dispute: dict) -> Result:
    """Flag the account and take the disputed amount (charge.dispute.created, .funds_withdrawn)."""
    user = _payer_of_dispute(dispute)
    if user is None:
        return Result(Outcome.IGNORED, f"dispute {dispute['id']} is not on a top-up")
    _flag_account(user=user, dispute=dispute)
    # Even an inquiry: the card holder is questioning a payment, so the card is not charged again unasked.
    autorecharge.stop_for_dispute(user_id=user.pk, dispute_id=dispute["id"])
    if _is_inquiry(dispute):
        return Result(Outcome.RECORDED, f"inquiry {dispute['id']}: account flagged, no funds withdrawn")
    try:
        _debit_dispute(user=user, dispute=dispute)
    except ledger.DuplicateReference:
        return Result(Outcome.ALREADY_BOOKED, f"{dispute['id']} was already debited")
    return Result(Outcome.BOOKED, f"debited ${usd_from_cents(dispute['amount'])} from {user}, account flagged")


def book_dispute_closed(*, dispute: dict) -> Result:
    """Close the flag; when we won, give the disputed amount back (charge.dispute.closed)."""
    user = _payer_of_dispute(dispute)
    if user is None:
        return Result(Outcome.IGNORED, f"dispute {dispute['id']} is not on a top-up")
    _flag_account(user=user, dispute=dispute)
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
                _debit_dispute(user=user, dispute=dispute)
            except ledger.DuplicateReference:
                pass
            ledger.credit(
                user=user, amount=amount, kind=ledger.Kind.DISPUTE_WON,
                reference=f"{dispute['id']}:won", memo=f"Stripe dispute {dispute['id']} won",
            )
    except ledger.DuplicateReference:
        return Result(Outcome.ALREADY_BOOKED, f"{dispute['id']} win was already credited")
    return Result(Outcome.BOOKED, f"dispute won: credited ${amount} back to {user}")


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
    user = _user_of_metadata(metadata, client_reference_id=session.get("client_reference_id"))
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


def _payer_of_payment_intent(payment_intent_id: str):
    """The user whose top-up or auto-recharge this payment was; None when it is not ours."""
    if not payment_intent_id:
        return None
    recharge = Recharge.objects.select_related("user").filter(payment_intent_id=payment_intent_id).first()
    if recharge is not None:
        return recharge.user
    topup = _topup_of_payment_intent(payment_intent_id)
    return topup.user if topup is not None else None


def _payer_of_dispute(dispute: dict):
    payment_intent_id = dispute.get("payment_intent") or ""
    if not payment_intent_id and dispute.get("charge") and stripe.is_configured():
        payment_intent_id = stripe.payment_intent_of_charge(charge_id=dispute["charge"])
    return _payer_of_payment_intent(payment_intent_id)


def _recharge_of_payment_intent(payment_intent: dict) -> Recharge | None:
    """Found by our metadata, not by the stored intent id: the webhook can beat the task's commit."""
    metadata = payment_intent.get("metadata") or {}
    if metadata.get("purpose") != stripe.RECHARGE_PURPOSE:
        return None
    recharge_id, user_id = str(metadata.get("recharge_id", "")), str(metadata.get("user_id", ""))
    if not (recharge_id.isdigit() and user_id.isdigit()):
        return None
    return Recharge.objects.select_related("user").filter(pk=int(recharge_id), user_id=int(user_id)).first()


def _user_of_metadata(metadata: dict, *, client_reference_id):
    """The user our metadata names, when the session's own client_reference_id agrees."""
    user_id = str(metadata.get("user_id", ""))
    if not user_id.isdigit() or client_reference_id not in (None, user_id):
        return None
    return get_user_model().objects.filter(pk=int(user_id)).first()


def _save_card_of_paid_session(*, session: dict, user, payment_intent_id: str) -> str:
    """Store the card of a top-up paid with "save my card"; a note for the event log."""
    if (session.get("metadata") or {}).get("save_card") != "1" or not payment_intent_id:
        return ""
    try:
        card = stripe.card_of_payment_intent(payment_intent_id=payment_intent_id)
    except stripe.StripeUnavailable as exc:
        # The money is booked; the user can still add the card from the billing page.
        log.warning("could not fetch the card of %s: %s", payment_intent_id, exc)
        return "; card not saved (Stripe unavailable)"
    if card is None or not cards.store_card(user=user, card=card):
        return "; no card to save"
    return f"; saved {card.brand} ending {card.last4}"


def _refunds_in(charge: dict) -> list[dict]:
    # Events rendered for API versions before 2022-11-15 carry the refunds; newer ones don't.
    refunds = charge.get("refunds")
    if isinstance(refunds, dict) and not refunds.get("has_more"):
        return refunds.get("data") or []
    return stripe.refunds_of_charge(charge_id=charge["id"])


def _is_inquiry(dispute: dict) -> bool:
    # Inquiries (warning_* statuses) are questions from the card issuer: no funds are withdrawn.
    return str(dispute.get("status", "")).startswith("warning_")


def _debit_dispute(*, user, dispute: dict) -> None:
    ledger.debit(
        user=user, amount=usd_from_cents(dispute["amount"]), kind=ledger.Kind.DISPUTE,
        reference=dispute["id"], memo=f"Stripe dispute {dispute['id']} ({dispute.get('reason', 'unknown')})",
    )


def _flag_account(*, user, dispute: dict) -> None:
    AccountFlag.objects.get_or_create(
        reference=dispute["id"],
        defaults={
            "user": user,
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
