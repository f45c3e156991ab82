"""Rate limits, atomic in Redis (the `limits` library's Lua scripts), or in process memory when
REDIS_URL is unset (a single dev process, where memory is the whole truth).

- Per key: a moving window of ANIMEAPI_RATE_LIMIT_PER_MINUTE requests in any rolling minute.
- Per user: ANIMEAPI_DAILY_LIMIT images per UTC day, across all their keys. A request takes one
  unit up front (so concurrent requests cannot overshoot) and gives it back unless an image is
  delivered, so failed generations do not use up the quota.
"""

import datetime
import functools
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from limits import RateLimitItemPerDay, RateLimitItemPerMinute, storage, strategies
from limits.errors import StorageError


class LimitsUnavailable(Exception):
    """The limit store cannot be reached. Callers fail closed (503), never open."""


@dataclass(frozen=True)
class LimitState:
    limit: int
    remaining: int
    reset_at: float  # Unix time, seconds, when the window frees up

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> dict:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }


_storage_lock = threading.Lock()


@functools.cache
def _storage():
    # Built under a lock: `limits` resolves its Redis dependency lazily and that is not
    # thread-safe (concurrent first requests in a gthread worker saw "redis 0.0.0 not found").
    with _storage_lock:
        if settings.REDIS_URL:
            # Short socket timeouts: a dead Redis must turn into a quick 503, not a hung request.
            return storage.RedisStorage(
                settings.REDIS_URL, key_prefix="animeapi-limits", wrap_exceptions=True,
                socket_timeout=2, socket_connect_timeout=2,
            )
        return storage.MemoryStorage(wrap_exceptions=True)


@functools.cache
def _moving_window():
    return strategies.MovingWindowRateLimiter(_storage())


def _guard(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except StorageError as exc:
            raise LimitsUnavailable(str(exc)) from exc

    return wrapper


@_guard
def hit_rate_limit(*, bucket: str, limit: int | None = None) -> tuple[bool, LimitState]:
    """Count one request against `bucket` (e.g. "key:42"); False when over the per-minute limit."""
    limit = limit or settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE
    item = RateLimitItemPerMinute(limit)
    allowed = _moving_window().hit(item, "minute", bucket)
    stats = _moving_window().get_window_stats(item, "minute", bucket)
    return allowed, LimitState(limit=limit, remaining=stats.remaining, reset_at=stats.reset_time)


def utc_day(now: float | None = None) -> str:
    return datetime.datetime.fromtimestamp(now or time.time(), datetime.UTC).strftime("%Y-%m-%d")


def _next_utc_midnight() -> int:
    today = datetime.datetime.now(datetime.UTC).date()
    tomorrow = datetime.datetime.combine(today + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    return int(tomorrow.timestamp())


def _daily_item():
    return RateLimitItemPerDay(settings.ANIMEAPI_DAILY_LIMIT)


def _daily_key(user_id: int, day: str, test: bool = False) -> str:
    # Test keys have a quota of their own, so a CI suite never eats into production's.
    return _daily_item().key_for("daily-test" if test else "daily", str(user_id), day)


@_guard
def take_daily_quota(*, user_id: int, test: bool = False, amount: int = 1,
                     day: str | None = None) -> tuple[bool, LimitState, str]:
    """Take `amount` images from today's quota (all or none). Returns (allowed, state, day); give
    them back with the day."""
    day = day or utc_day()
    item = _daily_item()
    # The date is in the key, so the window is the UTC calendar day, not 24 h from the first hit.
    used = _storage().incr(_daily_key(user_id, day, test), item.get_expiry() + 3600, amount=amount)
    allowed = used <= item.amount
    if not allowed:
        _storage().incr(_daily_key(user_id, day, test), item.get_expiry() + 3600, amount=-amount)
        used -= amount
    return allowed, LimitState(limit=item.amount, remaining=item.amount - used, reset_at=_next_utc_midnight()), day


@_guard
def give_back_daily_quota(*, user_id: int, day: str, test: bool = False, amount: int = 1) -> None:
    _storage().incr(_daily_key(user_id, day, test), _daily_item().get_expiry() + 3600, amount=-amount)


@_guard
def daily_used(*, user_id: int, test: bool = False) -> int:
    return max(0, _storage().get(_daily_key(user_id, utc_day(), test)))


def reset_all() -> None:
    """Forget every counter (tests)."""
    _storage().reset()
