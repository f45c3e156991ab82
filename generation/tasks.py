from celery import shared_task

from . import pipeline


@shared_task(name="generation.tasks.run_generation", acks_late=True, reject_on_worker_lost=True)
def run_generation_task(generation_id: str, deadline_at: float) -> dict:
    """Idempotent by generation id: a redelivered task finds the row already claimed.

    Returns the outcome (final fields), or {} when this delivery had nothing to do.
    """
    return pipeline.run_generation(generation_id=generation_id, deadline_at=deadline_at)
