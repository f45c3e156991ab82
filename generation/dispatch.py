"""The web side of a generation: charge, render or hand the work to a worker, wait (or not), answer.

Sync requests whose backend only waits on the network (Runware, preview) are rendered right here,
in the web process (GENERATION_RENDER_IN_WEB): a Celery round trip and its result backend would
cost more than the work itself. Other sync requests wait for a worker's outcome (queue
`generate`); async ones (202) are always queued and left to the worker, the webhook and the
stale-generation sweep. Whatever goes wrong on this side (the broker down, the deadline passed,
no outcome) fails the row through charging.fail_generation, which refunds and gives the daily
unit back once, whoever gets there first.
"""

import logging
import time

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from django.db import DatabaseError, connection

from config.metrics import GENERATION_SECONDS

from . import backends, catalog, quota, rendering, safety
from .charging import GenerationParams, backend_for, fail_generation, on_a_live_connection, start_generations
from .models import Generation
from .tasks import run_generation_batch_task, run_generation_task

log = logging.getLogger(__name__)
Status = Generation.Status

# After the deadline, how long the web waits for the worker to record the outcome itself.
WAIT_GRACE_S = 2.0


def submit_generation(*, user, api_key, params: GenerationParams, daily_unit: quota.DailyUnit | None = None,
                      request_id: str = "", base_url: str = "") -> Generation:
    """Charge and queue one image, without waiting (async jobs): the worker finishes the row."""
    return submit_generations(user=user, api_key=api_key, params=params, daily_unit=daily_unit,
                              request_id=request_id, base_url=base_url)[0]


def submit_generations(*, user, api_key, params: GenerationParams, daily_unit: quota.DailyUnit | None = None,
                       request_id: str = "", base_url: str = "") -> list[Generation]:
    """Charge and queue the request's n images, without waiting: the worker finishes the rows."""
    generations = start_generations(user=user, api_key=api_key, params=params, daily_unit=daily_unit,
                                    request_id=request_id, base_url=base_url)
    if generations[0].status == Status.FAILED:
        return generations
    try:
        _queue(generations, deadline_at=time.time() + settings.GENERATION_TIMEOUT_S)
    except Exception as exc:
        log.exception("could not queue generations %s", [str(g.id) for g in generations])
        for generation in generations:
            fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail=f"queue error: {exc}")
            generation.refresh_from_db()
    return generations


def generate_and_wait(*, user, api_key, params: GenerationParams, daily_unit: quota.DailyUnit | None = None,
                      request_id: str = "") -> Generation:
    """generate_and_wait_all for one image: the final row."""
    return generate_and_wait_all(user=user, api_key=api_key, params=params, daily_unit=daily_unit,
                                 request_id=request_id)[0]


def generate_and_wait_all(*, user, api_key, params: GenerationParams, daily_unit: quota.DailyUnit | None = None,
                          request_id: str = "") -> list[Generation]:
    """Charge, render the request's n images (here or on a worker, as one batch), return the
    final rows in order. Each image succeeds or fails (refunded) on its own.

    The returned instances carry `balance_after`: the user's balance right after each charge.
    """
    started = time.perf_counter()
    in_web = renders_in_web(backend_for(api_key), allow_nsfw=params.allow_nsfw)
    generations = start_generations(user=user, api_key=api_key, params=params, daily_unit=daily_unit,
                                    request_id=request_id, claim=in_web)
    if generations[0].status == Status.FAILED:
        return generations
    deadline_at = time.time() + settings.GENERATION_TIMEOUT_S
    if in_web:
        try:
            outcomes = rendering.render_batch(generations, deadline_at=deadline_at, request_started=started)
        except BaseException as exc:
            # Rendering fails each image on its own; this is for what it did not foresee (a
            # backend that cannot even be built). The rows must not wait minutes for the sweep
            # while the caller, told to retry, is charged again.
            for generation in generations:
                fail_generation(generation_id=generation.id, code="GENERATION_FAILED",
                                detail=f"rendering crashed: {type(exc).__name__}: {exc}")
            raise
    else:
        outcomes = _render_on_a_worker(generations, deadline_at=deadline_at)
    for generation, outcome in zip(generations, outcomes, strict=True):
        _apply_outcome(generation, outcome, started=started)
        _observe(generation)
    return generations


def _apply_outcome(generation: Generation, outcome, *, started: float) -> None:
    if isinstance(outcome, dict) and outcome.get("status") in (Status.SUCCEEDED, Status.FAILED):
        for field, value in outcome.items():
            setattr(generation, field, value)
    else:
        # No outcome came back (a timeout, a dead worker, a redelivered task): the row decides,
        # and anything still unfinished is failed and refunded here.
        fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail="no outcome recorded")
        on_a_live_connection(generation.refresh_from_db)
    if generation.total_ms is None:  # rendered elsewhere, or failed: record the request's time now
        generation.total_ms = int((time.perf_counter() - started) * 1000)
        try:
            on_a_live_connection(lambda: Generation.objects.filter(pk=generation.pk).update(
                total_ms=generation.total_ms))
        except DatabaseError:
            # A timing, not money: the image and its charge stand, and the answer must go out (a
            # 503 here would invite a retry that charges again).
            log.warning("could not record total_ms of %s", generation.pk)


def renders_in_web(backend_name: str, *, allow_nsfw: bool = True) -> bool:
    """Whether this process renders a sync request itself. Not when allowNSFW is false and the
    image classifier is installed: it costs about 130 ms of CPU per image (bench/README.md), work
    for the `generate` workers, not for web nodes that serve everyone else's requests."""
    if not allow_nsfw and safety.classifier_installed():
        return False
    return settings.GENERATION_RENDER_IN_WEB and backends.renders_in_web(backend_name)


def _queue(generations: list[Generation], *, deadline_at: float):
    """Send the request's generations to the workers of their model: one task, whatever n."""
    first = generations[0]
    queue = catalog.queue_for(catalog.get_model(first.catalog_model), backend_name=first.backend)
    # The default queue comes from CELERY_TASK_ROUTES (so a test may point a task elsewhere).
    options = {**_time_limits(), **({"queue": queue} if queue != catalog.DEFAULT_QUEUE else {})}
    if len(generations) == 1:
        return run_generation_task.apply_async(args=[str(first.id), deadline_at], **options)
    return run_generation_batch_task.apply_async(args=[[str(g.id) for g in generations], deadline_at], **options)


def _render_on_a_worker(generations: list[Generation], *, deadline_at: float) -> list[dict]:
    """Queue the generations and wait for the worker's outcomes; {} for each that none came back for."""
    try:
        result = _queue(generations, deadline_at=deadline_at)
        if not result.ready() and not connection.in_atomic_block:
            # Seconds of waiting on a GPU must not hold a database connection: give it back to
            # the pool, so a web node's many waiting requests share a few connections.
            connection.close()
        outcome = result.get(timeout=settings.GENERATION_TIMEOUT_S + WAIT_GRACE_S, propagate=False,
                             disable_sync_subtasks=False)
        outcomes = outcome if len(generations) > 1 else [outcome]
        if isinstance(outcomes, list) and len(outcomes) == len(generations):
            return outcomes
    except CeleryTimeout:
        for generation in generations:
            fail_generation(generation_id=generation.id, code="GENERATION_FAILED",
                            detail="timed out waiting for the worker")
    except Exception as exc:  # the broker or result store is unreachable
        log.exception("could not run generations %s", [str(g.id) for g in generations])
        for generation in generations:
            fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail=f"queue error: {exc}")
    return [{} for _ in generations]


def _observe(generation: Generation) -> None:
    for stage, ms in (("queue", generation.queue_ms), ("generate", generation.generate_ms), ("total", generation.total_ms)):
        if ms is not None:
            GENERATION_SECONDS.labels(generation.backend, stage).observe(ms / 1000)


def _time_limits() -> dict:
    """Per message, so they follow GENERATION_TIMEOUT_S as the sender has it (Celery puts a
    task's limits in each message). A backend hanging past the deadline is interrupted (soft),
    then its worker process killed (hard), which frees the GPU; the charge is refunded either way
    (by the pipeline, the waiting web process, or the stale-generation beat task). Prefork only."""
    return {
        "soft_time_limit": settings.GENERATION_TIMEOUT_S + settings.GENERATION_SOFT_LIMIT_MARGIN_S,
        "time_limit": settings.GENERATION_TIMEOUT_S + settings.GENERATION_HARD_LIMIT_MARGIN_S,
    }
