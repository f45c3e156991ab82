"""Idempotency-Key, with Stripe's semantics.

A retry with the same key and the same body within 24 hours gets the first answer again and is
not charged twice; the same key with another body is refused (422); a retry while the first
request is still running is refused (409). Only requests that got past validation and rate
limits are recorded, as at Stripe.
"""

import datetime
import hashlib
import json
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import ApiError

from .models import IdempotencyRecord

TTL = datetime.timedelta(hours=24)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: dict


def request_fingerprint(payload: dict) -> str:
    """The same JSON, whatever its key order or whitespace, is the same request."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def validate_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApiError(status_code=400, code="INVALID_IDEMPOTENCY_KEY",
                       message=f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    return key


def begin(*, user, key: str, fingerprint: str) -> StoredAnswer | None:
    """Claim `key` for this request (None: go ahead), or return the stored first answer."""
    IdempotencyRecord.objects.filter(user=user, key=key, created_at__lt=timezone.now() - TTL).delete()
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(user=user, key=key, request_hash=fingerprint)
        return None
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.get(user=user, key=key)
    if record.request_hash != fingerprint:
        raise ApiError(status_code=422, code="IDEMPOTENCY_KEY_REUSED",
                       message="This Idempotency-Key was used with a different request body")
    if record.status_code is None:
        raise ApiError(status_code=409, code="IDEMPOTENCY_IN_PROGRESS",
                       message="A request with this Idempotency-Key is still being processed",
                       headers={"Retry-After": "1"})
    return StoredAnswer(status_code=record.status_code, body=record.response_body)


def finish(*, user, key: str, status_code: int, body: dict) -> None:
    IdempotencyRecord.objects.filter(user=user, key=key).update(status_code=status_code, response_body=body)


def abandon(*, user, key: str) -> None:
    """The request crashed before it had an answer: let a retry run it afresh."""
    IdempotencyRecord.objects.filter(user=user, key=key, status_code__isnull=True).delete()
