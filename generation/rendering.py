"""What a worker runs for one generation: enhance -> backend -> safety -> WEBP -> XMP -> store.

Safe to run twice for one id: only the first claim of the PENDING row does anything. Any failure
is handed to charging.fail_generation (refund, daily unit back); a success that arrives after
the row was failed by someone else (the web side's deadline) deletes its image.
"""

import logging
import time

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.utils import timezone

from . import catalog, enhance, images, safety, xmp
from .backends import get_backend
from .backends.base import BackendError, ImageRequest
from .charging import fail_generation, new_seed, on_a_live_connection
from .models import Generation
from .safety import policy

log = logging.getLogger(__name__)
Status = Generation.Status


class NsfwContentBlocked(Exception):
    def __init__(self, backend_cost_usd=None):
        super().__init__("flagged twice")
        self.backend_cost_usd = backend_cost_usd


def run_generation(*, generation_id, deadline_at: float) -> dict:
    """A worker's task: claim the PENDING row, then render it. {} when another delivery of the
    same task claimed it first."""
    claimed = Generation.objects.filter(pk=generation_id, status=Status.PENDING).update(
        status=Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return {}
    return render(Generation.objects.get(pk=generation_id), deadline_at=deadline_at)


def run_generation_batch(*, generation_ids: list, deadline_at: float) -> list[dict]:
    """run_generation for the n rows of one request, rendered as one batch; {} for each row
    another delivery claimed first."""
    claimed_ids = []
    for generation_id in generation_ids:
        if Generation.objects.filter(pk=generation_id, status=Status.PENDING).update(
                status=Status.RUNNING, started_at=timezone.now()):
            claimed_ids.append(str(generation_id))
    by_id = {str(g.pk): g for g in Generation.objects.filter(pk__in=claimed_ids)}
    claimed = [by_id[generation_id] for generation_id in claimed_ids]
    outcomes = iter(render_batch(claimed, deadline_at=deadline_at) if claimed else [])
    return [next(outcomes) if str(generation_id) in by_id else {} for generation_id in generation_ids]


def render(generation: Generation, *, deadline_at: float, request_started: float | None = None) -> dict:
    """Render a RUNNING generation this process has claimed. `deadline_at` is a Unix time: the
    API's deadline, queue time included. Returns the outcome (the row's final fields) so a waiting
    web process needs no extra query to answer; {} when the row was failed meanwhile.

    `request_started` (a perf_counter value) is given when the web process renders its own request:
    the request's total time is then written with the outcome, in the same UPDATE.
    """
    return render_batch([generation], deadline_at=deadline_at, request_started=request_started)[0]


def render_batch(generations: list[Generation], *, deadline_at: float,
                 request_started: float | None = None) -> list[dict]:
    """render() for the n RUNNING rows of one request, in one backend call (generate_batch: one
    batch on a GPU). Each image succeeds or fails on its own: a failed one is refunded and its
    daily unit given back, the others are delivered. The outcomes, in the rows' order."""
    deadline = time.monotonic() + (deadline_at - time.time())
    outcomes: list[dict | None] = [None] * len(generations)
    prepared = []  # (index, generation, outcome, ImageRequest)
    for index, generation in enumerate(generations):
        outcome = {"queue_ms": _ms(generation.started_at - generation.created_at)}
        try:
            outcome["enhanced_prompt"], outcome["negative_prompt"] = _backend_prompts(generation)
        except Exception as exc:
            # The n images of a request share its prompt: one content-policy refusal is recorded.
            first_refusal = not any(o and o.get("error_code") == policy.REFUSAL_CODE for o in outcomes)
            outcomes[index] = _failed(generation, outcome, exc, record_refusal=first_refusal)
            continue
        prepared.append((index, generation, outcome, ImageRequest(
            prompt=outcome["enhanced_prompt"], negative_prompt=outcome["negative_prompt"],
            width=generation.width, height=generation.height, allow_nsfw=generation.allow_nsfw,
            seed=generation.seed, request_id=generation.request_id, model_id=generation.catalog_model,
        )))
    if not prepared:
        return outcomes
    # This process's configuration decides (web nodes need no backend credentials when workers
    # render); test keys always get the preview. One request's rows share their key.
    backend_name = "preview" if generations[0].is_test else settings.GENERATION_BACKEND
    backend = get_backend(backend_name)
    if backend.waits_seconds and not connection.in_atomic_block:
        # Seconds of backend work need no database connection: hand it back to the pool,
        # so many concurrent generations share a few connections.
        connection.close()
    started = time.perf_counter()
    try:
        results = backend.generate_batch([request for *_, request in prepared], deadline=deadline)
    except Exception as exc:  # the whole batch failed
        results = [exc] * len(prepared)
    generate_ms = _ms_since(started)
    for (index, generation, outcome, request), result in zip(prepared, results, strict=True):
        outcome.update(backend=backend_name, generate_ms=generate_ms)
        try:
            if isinstance(result, Exception):
                raise result
            image = _checked(backend, request, result, deadline=deadline)
            data = images.to_webp(image.data, width=generation.width, height=generation.height)
            data = xmp.embed_xmp(data, _generation_xmp(generation, outcome, image), width=generation.width,
                                 height=generation.height)
            name = images.store_image(data)
        except Exception as exc:
            outcomes[index] = _failed(generation, outcome, exc)
            continue
        outcomes[index] = _succeeded(generation, outcome, image, name, request_started=request_started)
    return outcomes


def _failed(generation: Generation, outcome: dict, exc: Exception, *, record_refusal: bool = True) -> dict:
    code, detail = _failure(exc, generation, record_refusal=record_refusal)
    if isinstance(exc, NsfwContentBlocked):
        outcome["backend_cost_usd"] = exc.backend_cost_usd
    fail_generation(generation_id=generation.pk, code=code, detail=detail, **outcome)
    outcome.pop("backend_cost_usd", None)  # Decimal: not for the JSON result
    return {**outcome, "status": Status.FAILED, "error_code": code}


def _succeeded(generation: Generation, outcome: dict, image, name: str, *, request_started: float | None) -> dict:
    outcome.update(status=Status.SUCCEEDED, image=name, seed=image.seed, model=image.model)
    if generation.is_async:
        # Nobody waits in a web process to measure it: the worker's view of request to finish.
        outcome["total_ms"] = _ms(timezone.now() - generation.created_at)
    elif request_started is not None:
        outcome["total_ms"] = _ms_since(request_started)
    finished = on_a_live_connection(lambda: Generation.objects.filter(pk=generation.pk, status=Status.RUNNING).update(
        **outcome, backend_cost_usd=image.cost_usd, details=image.details, finished_at=timezone.now(),
    ))
    if not finished:
        # The web side timed out and refunded meanwhile: nobody will ever be shown this image.
        images.delete_image(name)
        return {}
    return outcome


def _backend_prompts(generation: Generation) -> tuple[str, str]:
    """The positive and negative prompts the backend gets. The content policy checked the user's
    prompt at the door; here it checks what the enhancer made of it (an LLM may add anything).
    The quality tags and negative prompt are the chosen model's family's; the caller's negative
    prompt comes after the family's."""
    family = catalog.get_model(generation.catalog_model).family
    if generation.enhance:
        enhanced = enhance.enhance_prompt(generation.prompt, allow_nsfw=generation.allow_nsfw, style=family)
        return (policy.checked_enhancement(prompt=generation.prompt, enhanced=enhanced.prompt),
                with_user_negative(enhanced.negative_prompt, generation.user_negative_prompt))
    policy.enforce(generation.prompt)
    # allowNSFW: false is a promise even for a prompt sent as written.
    prompt = generation.prompt if generation.allow_nsfw else policy.without_sexual_terms(generation.prompt)
    return prompt, with_user_negative(enhance.negative_prompt(allow_nsfw=generation.allow_nsfw, style=family),
                                      generation.user_negative_prompt)


def with_user_negative(family_negative: str, user_negative: str) -> str:
    return ", ".join(part for part in (family_negative.strip(), user_negative.strip()) if part)


def _total_cost(*images_):
    costs = [image.cost_usd for image in images_ if image.cost_usd is not None]
    return sum(costs) if costs else None


def _checked(backend, request: ImageRequest, image, *, deadline: float):
    """The image if it passes the safety check; a flagged one is retried once with a new seed.
    The backend's cost covers every image it made for us, the withheld ones too."""
    if request.allow_nsfw or not safety.is_flagged(image):
        return image
    log.info("image flagged as NSFW with allowNSFW=false; retrying with a new seed")
    retry = ImageRequest(**{**request.__dict__, "seed": new_seed()})
    second = backend.generate(retry, deadline=deadline)
    if safety.is_flagged(second):
        raise NsfwContentBlocked(backend_cost_usd=_total_cost(image, second))
    second.cost_usd = _total_cost(image, second)
    return second


def _generation_xmp(generation: Generation, outcome: dict, image) -> bytes:
    """The parameters that made the image, so the file itself says how to make it again."""
    return xmp.build_xmp({
        "prompt": outcome["enhanced_prompt"],
        "negativePrompt": outcome["negative_prompt"],
        "userNegativePrompt": generation.user_negative_prompt,
        "model": image.model,
        "modelId": generation.catalog_model,
        "seed": image.seed,
        "steps": image.details.get("steps", ""),
        "cfgScale": image.details.get("CFGScale", ""),
        "scheduler": image.details.get("scheduler", ""),
        "width": generation.width,
        "height": generation.height,
        "backend": outcome["backend"],
        "generationId": str(generation.id),
    })


def _failure(exc: Exception, generation: Generation, *, record_refusal: bool = True) -> tuple[str, str]:
    """The API's error code and the admin-only detail for an exception of the pipeline."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return "GENERATION_FAILED", "timed out: the task's time limit interrupted the backend"
    if isinstance(exc, NsfwContentBlocked):
        return "NSFW_CONTENT_BLOCKED", "flagged twice"
    if isinstance(exc, policy.ContentPolicyViolation):
        if record_refusal:
            policy.record_refusal(generation.prompt, verdict=exc.verdict, user=generation.user,
                                  api_key=generation.api_key, endpoint="worker")
        return exc.code, f"the enhanced prompt broke the content policy ({exc.verdict.minor_term} + {exc.verdict.sexual_term})"
    if isinstance(exc, BackendError):
        return "GENERATION_FAILED", exc.detail + (f" [{exc.provider_code}]" if exc.provider_code else "")
    if isinstance(exc, images.InvalidImage):
        return "GENERATION_FAILED", f"invalid image: {exc}"
    log.exception("generation %s crashed", generation.pk)
    return "GENERATION_FAILED", f"{type(exc).__name__}: {exc}"


def _ms(delta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


def _ms_since(perf_start: float) -> int:
    return int((time.perf_counter() - perf_start) * 1000)
