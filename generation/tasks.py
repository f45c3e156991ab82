import logging

from celery import shared_task
from django.conf import settings

from . import charging, images, integrity, rendering, webhooks
from .models import Generation
from .resources import generation_event

log = logging.getLogger(__name__)


@shared_task(name="generation.tasks.run_generation", acks_late=True, reject_on_worker_lost=True)
def run_generation_task(generation_id: str, deadline_at: float) -> dict:
    """Idempotent by generation id: a redelivered task finds the row already claimed.

    Returns the outcome (final fields), or {} when this delivery had nothing to do.
    """
    outcome = rendering.run_generation(generation_id=generation_id, deadline_at=deadline_at)
    if outcome:
        notify_if_async(generation_id)
    return outcome


@shared_task(name="generation.tasks.run_generation_batch", acks_late=True, reject_on_worker_lost=True)
def run_generation_batch_task(generation_ids: list[str], deadline_at: float) -> list[dict]:
    """The n images of one request as one batch; the outcomes in order ({} for any row another
    delivery had claimed)."""
    outcomes = rendering.run_generation_batch(generation_ids=generation_ids, deadline_at=deadline_at)
    for generation_id, outcome in zip(generation_ids, outcomes, strict=True):
        if outcome:
            notify_if_async(generation_id)
    return outcomes


def notify_if_async(generation_id) -> None:
    """An async generation that just finished tells its webhook_url, if it has one."""
    if Generation.objects.filter(pk=generation_id, is_async=True).exclude(webhook_url="").exists():
        deliver_webhook_task.delay(str(generation_id))


@shared_task(
    name="generation.tasks.deliver_webhook", bind=True, acks_late=True,
    # Backoff capped below the broker's visibility timeout (600 s): a retry waiting longer in a
    # worker would be handed to a second one and delivered twice.
    autoretry_for=(webhooks.WebhookDeliveryFailed,), retry_backoff=10, retry_backoff_max=540,
    retry_jitter=True, max_retries=12,
)
def deliver_webhook_task(self, generation_id: str) -> None:
    """Tell the user's webhook_url that an async generation finished; retried for about an hour."""
    generation = Generation.objects.select_related("user").filter(pk=generation_id).first()
    if generation is None or not generation.webhook_url or generation.webhook_delivered_at:
        return
    webhooks.deliver(generation=generation, payload=generation_event(generation))


@shared_task(name="generation.tasks.expire_stale_generations")
def expire_stale_generations() -> int:
    """Fail and refund generations whose worker died while nobody waited for them (beat, every minute)."""
    count = 0
    for generation_id in charging.stale_generation_ids(lease_s=settings.GENERATION_LEASE_S):
        if charging.fail_generation(generation_id=generation_id, code="GENERATION_FAILED",
                                    detail="expired: no worker finished it within its lease"):
            notify_if_async(generation_id)
            count += 1
    if count:
        log.warning("expired %d stale generation(s)", count)
    return count


@shared_task(name="generation.tasks.prune_old_images")
def prune_old_images() -> int:
    """Delete images past IMAGE_RETENTION_DAYS (beat, hourly); nothing when it is 0."""
    if settings.IMAGE_RETENTION_DAYS <= 0:
        return 0
    return images.prune_images(older_than_days=settings.IMAGE_RETENTION_DAYS)


@shared_task(name="generation.tasks.check_ledger")
def check_ledger() -> int:
    """`manage.py ledger_check` as a beat task (daily): logs each difference as an error; the count."""
    differences = integrity.money_differences()
    for difference in differences:
        log.error("ledger check: %s", difference)
    return len(differences)
