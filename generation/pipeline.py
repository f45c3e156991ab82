"""The generation pipeline: charge -> (worker: enhance -> backend -> safety -> WEBP -> store) -> record.

The web side charges and waits; a Celery worker does the work. Status changes are conditional
UPDATEs, so whichever side finishes a generation first wins and the other backs off: a worker
that finishes after the web gave up deletes its image, and a refund can only happen once.
"""

import datetime
import logging
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal

from celery.exceptions import SoftTimeLimitExceeded
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from psycopg_pool import PoolTimeout

from accounts.apikeys import KeySpendCapReached, add_key_spend, remove_key_spend
from billing import ledger
from billing.models import LedgerEntry
from config.metrics import GENERATION_SECONDS, REFUNDS

from . import enhance, images, limits, safety, xmp
from .backends import get_backend
from .backends.base import BackendError, ImageRequest
from .models import ORIENTATIONS, Generation, charge_reference
from .safety import policy

log = logging.getLogger(__name__)
Status = Generation.Status

# After the deadline, how long the web waits for the worker to record the outcome itself.
WAIT_GRACE_S = 2.0


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    orientation: str = "portrait"
    allow_nsfw: bool = True
    enhance: bool = True
    seed: int | None = None
    is_async: bool = False
    webhook_url: str = ""


class NsfwContentBlocked(Exception):
    def __init__(self, backend_cost_usd=None):
        super().__init__("flagged twice")
        self.backend_cost_usd = backend_cost_usd


def new_seed() -> int:
    return secrets.randbelow(2**32)


def start_generation(*, user, api_key, params: GenerationParams, request_id: str = "", base_url: str = "") -> Generation:
    """Record the attempt and reserve its price in one transaction.

    Not enough balance (402 INSUFFICIENT_BALANCE) or a key's spend cap reached (402
    KEY_SPEND_CAP_REACHED) leaves a FAILED row and no charge. Test keys (`ank_test_`) are never
    charged and always use the preview backend.
    """
    width, height = ORIENTATIONS[params.orientation]
    is_test = api_key is not None and api_key.is_test
    price = Decimal("0") if is_test else settings.ANIMEAPI_PRICE_USD
    generation = Generation(
        user=user, api_key=api_key, request_id=request_id, prompt=params.prompt,
        orientation=params.orientation, width=width, height=height, allow_nsfw=params.allow_nsfw,
        enhance=params.enhance, seed=params.seed if params.seed is not None else new_seed(),
        backend="preview" if is_test else settings.GENERATION_BACKEND, cost_usd=price, is_test=is_test,
        is_async=params.is_async, webhook_url=params.webhook_url, base_url=base_url,
    )
    with transaction.atomic():
        generation.save(force_insert=True)
        try:
            generation.balance_after = _charge(generation)
        except (ledger.InsufficientBalance, KeySpendCapReached) as exc:
            generation.status = Status.FAILED
            generation.error_code = ("INSUFFICIENT_BALANCE" if isinstance(exc, ledger.InsufficientBalance)
                                     else "KEY_SPEND_CAP_REACHED")
            generation.cost_usd = Decimal("0")
            generation.finished_at = timezone.now()
            generation.save(update_fields=["status", "error_code", "cost_usd", "finished_at"])
    return generation


def _charge(generation: Generation) -> Decimal:
    """Reserve the price (and count it against the key's caps); the balance after the charge."""
    if generation.is_test:
        return ledger.balance(user=generation.user)
    api_key = generation.api_key
    if api_key is None:
        return ledger.reserve(user=generation.user, amount=generation.cost_usd,
                              reference=generation.charge_reference).balance_after
    # A savepoint, so a cap refused after the reservation undoes the reservation too.
    with transaction.atomic():
        charge = ledger.reserve(user=generation.user, amount=generation.cost_usd, reference=generation.charge_reference)
        add_key_spend(api_key=api_key, amount=generation.cost_usd, day=generation.created_at.date())
    return charge.balance_after


def on_a_live_connection(operation):
    """Run a bookkeeping write that follows seconds of backend work, during which the database
    connection may have died (a restart). Outside a transaction, retry once on a new connection:
    every such write is a conditional status change, so running it twice changes nothing twice."""
    try:
        return operation()
    except (OperationalError, InterfaceError) as exc:
        if connection.in_atomic_block or isinstance(exc.__cause__, PoolTimeout):
            raise  # a pool timeout means the database is down, not this connection: don't wait twice
        connection.close()
        return operation()


def fail_generation(*, generation_id, code: str, detail: str = "", **fields) -> bool:
    """Mark an unfinished generation failed and refund its charge, atomically, once."""

    def mark_failed_and_refund():
        with transaction.atomic():
            failed = Generation.objects.filter(pk=generation_id, status__in=[Status.PENDING, Status.RUNNING]).update(
                status=Status.FAILED, error_code=code, error_detail=detail[:5000], cost_usd=Decimal("0"),
                finished_at=timezone.now(), **fields,
            )
            if failed:
                charge = LedgerEntry.objects.filter(reference=charge_reference(generation_id)).first()
                if charge is not None:
                    ledger.refund(charge=charge, memo=f"Generation failed: {code}")
                    row = Generation.objects.values("api_key_id", "created_at").get(pk=generation_id)
                    if row["api_key_id"]:
                        remove_key_spend(api_key_id=row["api_key_id"], amount=-charge.amount,
                                         day=row["created_at"].date())
            return failed

    failed = on_a_live_connection(mark_failed_and_refund)
    if failed:
        REFUNDS.labels(code).inc()
        log.warning("generation %s failed: %s %s", generation_id, code, detail[:500])
        _after_async_finish(generation_id, succeeded=False)
    return bool(failed)


def _after_async_finish(generation_id, *, succeeded: bool) -> None:
    """For async generations, whoever finishes the row also does what the waiting web process
    would have: give back the daily unit of a failure, and notify the webhook."""
    row = (Generation.objects.filter(pk=generation_id, is_async=True)
           .values("user_id", "created_at", "webhook_url", "is_test").first())
    if row is None:
        return
    if not succeeded:
        try:
            limits.give_back_daily_quota(user_id=row["user_id"], day=limits.utc_day(row["created_at"].timestamp()),
                                         test=row["is_test"])
        except limits.LimitsUnavailable:
            log.warning("could not give back the daily unit of %s", generation_id)
    if row["webhook_url"]:
        from .tasks import deliver_webhook_task

        deliver_webhook_task.delay(str(generation_id))


def stale_generation_ids(*, lease_s: float) -> list:
    cutoff = timezone.now() - datetime.timedelta(seconds=lease_s)
    return list(Generation.objects.filter(status__in=[Status.PENDING, Status.RUNNING], created_at__lt=cutoff)
                .values_list("pk", flat=True)[:1000])


def _total_cost(*images_):
    costs = [image.cost_usd for image in images_ if image.cost_usd is not None]
    return sum(costs) if costs else None


def _generate_checked(backend, request: ImageRequest, *, deadline: float):
    """One image that passes the safety check; a flagged one is retried once with a new seed.
    The backend's cost covers every image it made for us, the withheld ones too."""
    image = backend.generate(request, deadline=deadline)
    if request.allow_nsfw or not safety.is_flagged(image):
        return image
    log.info("image flagged as NSFW with allowNSFW=false; retrying with a new seed")
    retry = ImageRequest(**{**request.__dict__, "seed": new_seed()})
    second = backend.generate(retry, deadline=deadline)
    if safety.is_flagged(second):
        raise NsfwContentBlocked(backend_cost_usd=_total_cost(image, second))
    second.cost_usd = _total_cost(image, second)
    return second


def run_generation(*, generation_id, deadline_at: float) -> dict:
    """The worker's part. Safe to run twice for one id: only the first claim does anything.

    `deadline_at` is a Unix time: the API's deadline, queue time included. Returns the outcome
    (the row's final fields) so the waiting web process needs no extra query to answer.
    """
    claimed = Generation.objects.filter(pk=generation_id, status=Status.PENDING).update(
        status=Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return {}
    generation = Generation.objects.get(pk=generation_id)
    deadline = time.monotonic() + (deadline_at - time.time())
    outcome = {"queue_ms": _ms(generation.started_at - generation.created_at)}
    try:
        outcome["enhanced_prompt"], outcome["negative_prompt"] = _backend_prompts(generation)
        request = ImageRequest(
            prompt=outcome["enhanced_prompt"], negative_prompt=outcome["negative_prompt"],
            width=generation.width, height=generation.height, allow_nsfw=generation.allow_nsfw,
            seed=generation.seed, request_id=generation.request_id,
        )
        started = time.perf_counter()
        # The worker's own configuration decides (web nodes need no backend credentials); test
        # keys always get the preview.
        backend_name = "preview" if generation.is_test else settings.GENERATION_BACKEND
        outcome["backend"] = backend_name
        if not connection.in_atomic_block:
            # Seconds of backend work need no database connection: hand it back to the pool,
            # so a threads-pool worker's many concurrent generations share a few connections.
            connection.close()
        image = _generate_checked(get_backend(backend_name), request, deadline=deadline)
        outcome["generate_ms"] = _ms_since(started)
        data = images.to_webp(image.data, width=generation.width, height=generation.height)
        data = xmp.embed_xmp(data, _generation_xmp(generation, outcome, image), width=generation.width,
                             height=generation.height)
        name = images.store_image(data)
    except Exception as exc:
        code, detail = _failure(exc, generation_id)
        if isinstance(exc, NsfwContentBlocked):
            outcome["backend_cost_usd"] = exc.backend_cost_usd
        fail_generation(generation_id=generation_id, code=code, detail=detail, **outcome)
        outcome.pop("backend_cost_usd", None)  # Decimal: not for the JSON result
        return {**outcome, "status": Status.FAILED, "error_code": code}

    outcome.update(status=Status.SUCCEEDED, image=name, seed=image.seed, model=image.model)
    if generation.is_async:
        # Nobody waits in a web process to measure it: the worker's view of request to finish.
        outcome["total_ms"] = _ms(timezone.now() - generation.created_at)
    finished = on_a_live_connection(lambda: Generation.objects.filter(pk=generation_id, status=Status.RUNNING).update(
        **outcome, backend_cost_usd=image.cost_usd, details=image.details, finished_at=timezone.now(),
    ))
    if not finished:
        # The web side timed out and refunded meanwhile: nobody will ever be shown this image.
        images.delete_image(name)
        return {}
    if generation.is_async:
        _after_async_finish(generation_id, succeeded=True)
    return outcome


def _backend_prompts(generation: Generation) -> tuple[str, str]:
    """The positive and negative prompts the backend gets. The content policy checked the user's
    prompt at the door; here it checks what the enhancer made of it (an LLM may add anything)."""
    if generation.enhance:
        enhanced = enhance.enhance_prompt(generation.prompt, allow_nsfw=generation.allow_nsfw)
        return (policy.checked_enhancement(prompt=generation.prompt, enhanced=enhanced.prompt),
                enhanced.negative_prompt)
    policy.enforce(generation.prompt)
    # allowNSFW: false is a promise even for a prompt sent as written.
    prompt = generation.prompt if generation.allow_nsfw else policy.without_sexual_terms(generation.prompt)
    return prompt, enhance.negative_prompt(allow_nsfw=generation.allow_nsfw)


def _generation_xmp(generation: Generation, outcome: dict, image) -> bytes:
    """The parameters that made the image, so the file itself says how to make it again."""
    return xmp.build_xmp({
        "prompt": outcome["enhanced_prompt"],
        "negativePrompt": outcome["negative_prompt"],
        "model": image.model,
        "seed": image.seed,
        "steps": image.details.get("steps", ""),
        "cfgScale": image.details.get("CFGScale", ""),
        "scheduler": image.details.get("scheduler", ""),
        "width": generation.width,
        "height": generation.height,
        "backend": generation.backend,
        "generationId": str(generation.id),
    })


def _failure(exc: Exception, generation_id) -> tuple[str, str]:
    """The API's error code and the admin-only detail for an exception of the pipeline."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return "GENERATION_FAILED", "timed out: the task's time limit interrupted the backend"
    if isinstance(exc, NsfwContentBlocked):
        return "NSFW_CONTENT_BLOCKED", "flagged twice"
    if isinstance(exc, policy.ContentPolicyViolation):
        generation = Generation.objects.select_related("user", "api_key").get(pk=generation_id)
        policy.record_refusal(generation.prompt, verdict=exc.verdict, user=generation.user,
                              api_key=generation.api_key, endpoint="worker")
        return exc.code, f"the enhanced prompt broke the content policy ({exc.verdict.minor_term} + {exc.verdict.sexual_term})"
    if isinstance(exc, BackendError):
        return "GENERATION_FAILED", exc.detail + (f" [{exc.provider_code}]" if exc.provider_code else "")
    if isinstance(exc, images.InvalidImage):
        return "GENERATION_FAILED", f"invalid image: {exc}"
    log.exception("generation %s crashed", generation_id)
    return "GENERATION_FAILED", f"{type(exc).__name__}: {exc}"


class GenerationStillRunning(Exception):
    """An unfinished generation's image cannot be deleted yet: it does not exist, and would
    appear after the deletion was answered."""


def delete_generation_image(*, generation: Generation) -> Generation:
    """Remove the image from storage and blank its URL; the record and its charge stay."""
    if generation.status in (Status.PENDING, Status.RUNNING):
        raise GenerationStillRunning()
    if generation.image:
        images.delete_image(generation.image)
        Generation.objects.filter(pk=generation.pk).update(image="", image_deleted_at=timezone.now())
        generation.refresh_from_db()
    return generation


def prune_images(*, older_than_days: int) -> int:
    """Delete images older than the retention period (beat task); records stay."""
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    pruned = 0
    for generation in Generation.objects.filter(created_at__lt=cutoff).exclude(image="").iterator():
        delete_generation_image(generation=generation)
        pruned += 1
    return pruned


def submit_generation(*, user, api_key, params: GenerationParams, request_id: str = "", base_url: str = "") -> Generation:
    """Charge and queue, without waiting (async jobs): the worker finishes the row."""
    from .tasks import run_generation_task

    generation = start_generation(user=user, api_key=api_key, params=params, request_id=request_id, base_url=base_url)
    if generation.status == Status.FAILED:
        return generation
    try:
        run_generation_task.apply_async(args=[str(generation.id), time.time() + settings.GENERATION_TIMEOUT_S],
                                        **_time_limits())
    except Exception as exc:
        log.exception("could not queue generation %s", generation.id)
        fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail=f"queue error: {exc}")
        generation.refresh_from_db()
    return generation


def generate_and_wait(*, user, api_key, params: GenerationParams, request_id: str = "") -> Generation:
    """Charge, hand the work to a worker (queue `generate`), wait for it, return the final row.

    The returned instance carries `balance_after`: the user's balance right after the charge.
    """
    from .tasks import run_generation_task

    started = time.perf_counter()
    generation = start_generation(user=user, api_key=api_key, params=params, request_id=request_id)
    if generation.status == Status.FAILED:
        return generation
    deadline_at = time.time() + settings.GENERATION_TIMEOUT_S
    outcome = {}
    try:
        result = run_generation_task.apply_async(args=[str(generation.id), deadline_at], **_time_limits())
        if not result.ready() and not connection.in_atomic_block:
            # Seconds of waiting on a GPU must not hold a database connection: give it back to
            # the pool, so a web node's many waiting requests share a few connections.
            connection.close()
        outcome = result.get(timeout=settings.GENERATION_TIMEOUT_S + WAIT_GRACE_S, propagate=False,
                             disable_sync_subtasks=False)
    except CeleryTimeout:
        fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail="timed out waiting for the worker")
    except Exception as exc:  # the broker or result store is unreachable
        log.exception("could not run generation %s", generation.id)
        fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail=f"queue error: {exc}")
    if isinstance(outcome, dict) and outcome.get("status") in (Status.SUCCEEDED, Status.FAILED):
        for field, value in outcome.items():
            setattr(generation, field, value)
    else:
        # No outcome came back (a timeout, a dead worker, a redelivered task): the row decides,
        # and anything still unfinished is failed and refunded here.
        fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail="no outcome recorded")
        on_a_live_connection(generation.refresh_from_db)
    generation.total_ms = _ms_since(started)
    try:
        on_a_live_connection(lambda: Generation.objects.filter(pk=generation.pk).update(total_ms=generation.total_ms))
    except DatabaseError:
        # A timing, not money: the image and its charge stand, and the answer must go out (a
        # 503 here would invite a retry that charges again).
        log.warning("could not record total_ms of %s", generation.pk)
    _observe(generation)
    return generation


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


def _ms(delta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


def _ms_since(perf_start: float) -> int:
    return int((time.perf_counter() - perf_start) * 1000)
