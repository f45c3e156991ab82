"""Charging: a generation's row and its price, reserved together; failing and refunding, once.

Status changes are conditional UPDATEs, so whichever side finishes a generation first wins and
the other backs off: a refund can only happen once, and with it the daily unit goes back.
"""

import datetime
import logging
import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from psycopg_pool import PoolTimeout

from accounts.apikeys import KeySpendCapReached, add_key_spend, remove_key_spend
from billing import ledger, pricing
from config.metrics import REFUNDS

from . import catalog, quota
from .models import ORIENTATIONS, Generation, charge_reference

log = logging.getLogger(__name__)
Status = Generation.Status


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    orientation: str = "portrait"
    allow_nsfw: bool = True
    enhance: bool = True
    seed: int | None = None
    is_async: bool = False
    webhook_url: str = ""
    negative_prompt: str = ""  # the caller's, added to the model family's
    model: str = ""  # a GENERATION_MODELS id; "" is the default model
    n: int = 1  # images, each its own generation row, seed, charge and daily unit
    end_user: str = ""  # OpenAI's `user`, kept for the caller's own records


def new_seed() -> int:
    return secrets.randbelow(2**32)


def backend_for(api_key) -> str:
    """The backend a generation is recorded with: test keys always get the preview."""
    return "preview" if api_key is not None and api_key.is_test else settings.GENERATION_BACKEND


def start_generation(*, user, api_key, params: GenerationParams, daily_unit: quota.DailyUnit | None = None,
                     request_id: str = "", base_url: str = "", claim: bool = False) -> Generation:
    """start_generations for a request of one image."""
    return start_generations(user=user, api_key=api_key, params=params, daily_unit=daily_unit,
                             request_id=request_id, base_url=base_url, claim=claim)[0]


def start_generations(*, user, api_key, params: GenerationParams, daily_unit: quota.DailyUnit | None = None,
                      request_id: str = "", base_url: str = "", claim: bool = False) -> list[Generation]:
    """Record the request's `params.n` attempts and reserve all their prices in one transaction:
    all or nothing. Each row adopts one of the request's daily units and has its own seed (the
    request's seed, then seed + 1, ...). With `claim`, the rows start RUNNING: this process renders
    them itself (no worker will claim them; the stale-generation sweep refunds them if this process
    dies).

    Not enough balance for all of them (402 INSUFFICIENT_BALANCE) or a key's spend cap reached (402
    KEY_SPEND_CAP_REACHED) leaves FAILED rows, no charge, and the units given back. Test keys
    (`ank_test_`) are never charged.
    """
    width, height = ORIENTATIONS[params.orientation]
    is_test = api_key is not None and api_key.is_test
    model = catalog.get_model(params.model)
    # The rows record the units' day; they adopt the units only once they exist (below), so an
    # error on the way leaves the units with the request, whose view gives them back.
    quota_day = daily_unit.day if daily_unit is not None else None
    batch_id = uuid.uuid4() if params.n > 1 else None
    generations = []
    for index in range(params.n):
        generation = Generation(
            user=user, api_key=api_key, request_id=request_id, prompt=params.prompt,
            orientation=params.orientation, width=width, height=height, allow_nsfw=params.allow_nsfw,
            enhance=params.enhance,
            seed=(params.seed + index) % 2**32 if params.seed is not None else new_seed(),
            backend=backend_for(api_key), cost_usd=pricing.image_price(is_test=is_test, list_price=model.price_usd),
            is_test=is_test, is_async=params.is_async, webhook_url=params.webhook_url, base_url=base_url,
            quota_day=quota_day, user_negative_prompt=params.negative_prompt, catalog_model=model.id,
            batch_id=batch_id, end_user=params.end_user,
        )
        if claim:
            generation.status, generation.started_at = Status.RUNNING, generation.created_at
        generations.append(generation)
    refusal = None
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint: a refusal of the k-th charge undoes the k-1 before it
                for generation in generations:
                    generation.save(force_insert=True)
                    generation.balance_after = _charge(generation)
        except (ledger.InsufficientBalance, KeySpendCapReached) as exc:
            refusal = ("INSUFFICIENT_BALANCE" if isinstance(exc, ledger.InsufficientBalance)
                       else "KEY_SPEND_CAP_REACHED")
            for generation in generations:
                generation.status, generation.error_code = Status.FAILED, refusal
                generation.cost_usd = Decimal("0")
                generation.finished_at = timezone.now()
                generation.balance_after = None
                generation.save(force_insert=True)
    if daily_unit is not None:
        daily_unit.adopt()
    if refusal is not None:
        quota.give_back(user_id=user.pk, day=quota_day, test=is_test, amount=len(generations))
    return generations


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
    """Mark an unfinished generation failed, refund its charge and give back its daily unit:
    atomically and once, whoever calls (the worker, the waiting web process, the beat sweep)."""

    def mark_failed_and_refund():
        with transaction.atomic():
            failed = Generation.objects.filter(pk=generation_id, status__in=[Status.PENDING, Status.RUNNING]).update(
                status=Status.FAILED, error_code=code, error_detail=detail[:5000], cost_usd=Decimal("0"),
                finished_at=timezone.now(), **fields,
            )
            row = None
            if failed:
                row = Generation.objects.values("api_key_id", "created_at", "user_id", "quota_day", "is_test").get(
                    pk=generation_id)
                refunded = ledger.refund_reference(reference=charge_reference(generation_id),
                                                   memo=f"Generation failed: {code}")
                if refunded is not None and row["api_key_id"]:
                    remove_key_spend(api_key_id=row["api_key_id"], amount=refunded, day=row["created_at"].date())
            return row

    row = on_a_live_connection(mark_failed_and_refund)
    if row is None:
        return False
    REFUNDS.labels(code).inc()
    log.warning("generation %s failed: %s %s", generation_id, code, detail[:500])
    quota.give_back(user_id=row["user_id"], day=row["quota_day"], test=row["is_test"])
    return True


def stale_generation_ids(*, lease_s: float) -> list:
    cutoff = timezone.now() - datetime.timedelta(seconds=lease_s)
    return list(Generation.objects.filter(status__in=[Status.PENDING, Status.RUNNING], created_at__lt=cutoff)
                .values_list("pk", flat=True)[:1000])
