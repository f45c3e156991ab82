"""Settling auto-recharges that stayed in flight: a lost task message, a webhook that never came.

A PENDING or PROCESSING Recharge blocks every later one (one in flight per user), so a beat task
asks Stripe about those older than AUTO_RECHARGE_STALE_MINUTES and settles them:
- a PaymentIntent that succeeded is credited through the webhook's own booking path
  (billing.topups.book_recharge_payment: once, whoever gets there first);
- one that failed, was canceled or waits for its holder fails the attempt like a declined card
  (auto-recharge off, one e-mail);
- an attempt with no PaymentIntent never reached Stripe: it is marked failed and, the card being
  no worse for it, auto-recharge stays on and tries again if the balance is still below.
Should Stripe have charged after all, its payment_intent.succeeded webhook still credits it.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import autorecharge, stripe, topups
from .models import Recharge

log = logging.getLogger(__name__)

# What a confirmed off-session PaymentIntent in these states will never turn into a payment by itself.
FAILED_INTENT_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action", "canceled")


@dataclass
class SettleReport:
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)  # still processing at Stripe, or Stripe not reachable


def settle_stale_recharges(*, now: datetime | None = None) -> SettleReport:
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.AUTO_RECHARGE_STALE_MINUTES)
    report = SettleReport()
    stale = Recharge.objects.filter(status__in=Recharge.IN_FLIGHT, created_at__lt=cutoff).order_by("created_at")
    for recharge in stale:
        outcome = settle(recharge=recharge)
        getattr(report, outcome).append(recharge.pk)
    return report


def settle(*, recharge: Recharge) -> str:
    """One stale attempt: "succeeded", "failed" or "left" (as it was)."""
    if not recharge.payment_intent_id:
        return _never_charged(recharge)
    try:
        intent = stripe.payment_intent(payment_intent_id=recharge.payment_intent_id)
    except stripe.StripeUnavailable as exc:
        log.warning("stale auto-recharge %s: Stripe not reachable, next run tries again: %s", recharge.pk, exc)
        return "left"
    status = intent.get("status") or ""
    if status == "succeeded":
        result = topups.book_recharge_payment(payment_intent=intent)
        log.info("stale auto-recharge %s: %s", recharge.pk, result.detail)
        return "succeeded" if result.outcome in (topups.Outcome.BOOKED, topups.Outcome.ALREADY_BOOKED) else "left"
    if status in FAILED_INTENT_STATUSES:
        error = intent.get("last_payment_error") or {}
        autorecharge.record_failure(
            recharge_id=recharge.pk, payment_intent_id=intent["id"],
            code=str(error.get("code") or ("authentication_required" if status == "requires_action" else status)),
            message=str(error.get("message") or f"The payment ended {status}."),
        )
        return "failed"
    return "left"  # processing: Stripe will still say how it ends, by webhook or on the next run


def _never_charged(recharge: Recharge) -> str:
    with transaction.atomic():
        marked = Recharge.objects.filter(pk=recharge.pk, status__in=Recharge.IN_FLIGHT, payment_intent_id="").update(
            status=Recharge.Status.FAILED, failure_code="no_answer", finished_at=timezone.now(),
            failure_message=f"No answer from Stripe within {settings.AUTO_RECHARGE_STALE_MINUTES} minutes",
        )
        if marked:
            autorecharge.start_if_below(user_id=recharge.user_id)
    return "failed" if marked else "left"


@shared_task(name="billing.stale_recharges.settle", autoretry_for=(OSError,), retry_backoff=30, max_retries=3)
def settle_stale_recharges_task() -> dict:
    report = settle_stale_recharges()
    if report.succeeded or report.failed:
        log.warning("settled stale auto-recharges: %s", report)
    return {"succeeded": report.succeeded, "failed": report.failed, "left": report.left}
