"""Stripe webhook events: verify, store, hand to billing.topups, record what came of it.

Every verified event is stored first (its Stripe id unique in the database), so the admin shows
everything Stripe sent, handled or not. A redelivery of an event already handled does nothing;
one whose handling failed is handled again (Stripe retries on our 500). Money is exactly-once
regardless, through the ledger's unique references.
"""

import logging
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.metrics import STRIPE_EVENTS

from . import stripe, topups
from .models import StripeEvent, TopUp

log = logging.getLogger(__name__)

Outcome = StripeEvent.Outcome

HANDLERS: dict[str, Callable[[dict], topups.Result]] = {
    "checkout.session.completed": lambda session: topups.checkout_session_completed(session=session),
    "checkout.session.async_payment_succeeded": lambda session: topups.book_paid_session(session=session),
    "checkout.session.async_payment_failed": lambda session: topups.record_session_ended(
        session=session, status=TopUp.Status.FAILED
    ),
    "checkout.session.expired": lambda session: topups.record_session_ended(
        session=session, status=TopUp.Status.EXPIRED
    ),
    "charge.refunded": lambda charge: topups.book_charge_refunds(charge=charge),
    "charge.dispute.created": lambda dispute: topups.book_dispute_opened(dispute=dispute),
    # An inquiry that escalates into a chargeback keeps its id; this is when its money goes.
    "charge.dispute.funds_withdrawn": lambda dispute: topups.book_dispute_opened(dispute=dispute),
    "charge.dispute.closed": lambda dispute: topups.book_dispute_closed(dispute=dispute),
    "payment_intent.succeeded": lambda intent: topups.book_recharge_payment(payment_intent=intent),
    "payment_intent.payment_failed": lambda intent: topups.record_recharge_failure(payment_intent=intent),
}


def receive_event(*, payload: bytes, signature: str | None) -> StripeEvent:
    """Handle one delivery. Raises stripe.InvalidWebhook (nothing stored) or stripe.StripeNotConfigured."""
    event = stripe.verify_webhook(payload=payload, signature=signature)
    stored = _store(event)
    if stored.processed_at is not None:
        return stored
    handler = HANDLERS.get(event["type"])
    if handler is None:
        result = topups.Result(Outcome.IGNORED, "not an event type we handle")
    else:
        try:
            result = handler(event["data"]["object"])
        except Exception as exc:
            # Kept on the event for the admin; the caller answers 500 so Stripe delivers it again.
            log.exception("Stripe event %s (%s) failed", event["id"], event["type"])
            StripeEvent.objects.filter(pk=stored.pk, processed_at__isnull=True).update(
                outcome=Outcome.FAILED, detail=f"{type(exc).__name__}: {exc}"[:2000]
            )
            STRIPE_EVENTS.labels(event["type"], Outcome.FAILED).inc()
            stored.refresh_from_db()
            return stored
    _finish(stored, result)
    stored.refresh_from_db()
    return stored


def _store(event: dict) -> StripeEvent:
    try:
        with transaction.atomic():
            return StripeEvent.objects.create(
                stripe_event_id=event["id"],
                type=event["type"],
                livemode=bool(event.get("livemode")),
                payload=event,
            )
    except IntegrityError:
        StripeEvent.objects.filter(stripe_event_id=event["id"]).update(delivery_count=F("delivery_count") + 1)
        return StripeEvent.objects.get(stripe_event_id=event["id"])


def _finish(stored: StripeEvent, result: topups.Result) -> None:
    rows = StripeEvent.objects.filter(pk=stored.pk)
    if result.outcome != Outcome.BOOKED:
        # Two deliveries of one event can run at once; the one that booked the money writes last
        # or wins, so its outcome is never overwritten by the other's "already booked".
        rows = rows.filter(processed_at__isnull=True)
    rows.update(outcome=result.outcome, detail=result.detail, processed_at=timezone.now())
    STRIPE_EVENTS.labels(stored.type, result.outcome).inc()
