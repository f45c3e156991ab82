"""DRF throttle classes over generation.limits.

Each throttle leaves its LimitState on the request so the view can send X-RateLimit-* headers
on every answer, and refuses with the reference's codes (429 + Retry-After).
"""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from config.errors import ApiError
from config.metrics import RATE_LIMIT_REFUSALS

from . import limits, quota


def _refused(code: str, message: str, state) -> ApiError:
    RATE_LIMIT_REFUSALS.labels(code).inc()
    return ApiError(status_code=429, code=code, message=message,
                    headers={"Retry-After": str(state.retry_after), **state.headers()})


def daily_limit_refusal(state) -> ApiError:
    return _refused("DAILY_LIMIT_EXCEEDED", "Daily limit exceeded", state)


def service_unavailable() -> ApiError:
    return _unavailable()


def _unavailable():
    return ApiError(status_code=503, code="SERVICE_UNAVAILABLE", message="Service temporarily unavailable, retry shortly",
                    headers={"Retry-After": "5"})


def _is_test(request) -> bool:
    return request.auth is not None and request.auth.is_test


def limit_bucket(request) -> str:
    """Per API key; the dashboard's playground (a session, no key) is limited per user."""
    if request.auth is not None:
        return f"key:{request.auth.pk}"
    return f"session:{request.user.pk}"


class PerKeyRateThrottle(BaseThrottle):
    """ANIMEAPI_RATE_LIMIT_PER_MINUTE requests per rolling minute per key -> 429 RATE_LIMIT_EXCEEDED."""

    scope = "generate"

    def limit(self):
        return settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE

    def allow_request(self, request, view):
        try:
            allowed, state = limits.hit_rate_limit(bucket=f"{self.scope}:{limit_bucket(request)}", limit=self.limit())
        except limits.LimitsUnavailable:
            raise _unavailable() from None
        request.rate_limit_state = state
        if not allowed:
            raise _refused("RATE_LIMIT_EXCEEDED", "Rate limit exceeded", state)
        return True


class DailyImageQuotaThrottle(BaseThrottle):
    """ANIMEAPI_DAILY_LIMIT images per UTC day per user -> 429 DAILY_LIMIT_EXCEEDED.

    The unit taken here (request.daily_unit) is adopted by the generation the request creates, or
    released by the view when it creates none (see generation.quota).
    """

    def allow_request(self, request, view):
        try:
            request.daily_unit = quota.take(user_id=request.user.pk, test=_is_test(request))
        except quota.DailyLimitReached as exc:
            request.daily_quota_state = exc.state
            raise _refused("DAILY_LIMIT_EXCEEDED", "Daily limit exceeded", exc.state) from None
        except limits.LimitsUnavailable:
            raise _unavailable() from None
        request.daily_quota_state = request.daily_unit.state
        return True


class FreeEndpointThrottle(PerKeyRateThrottle):
    """The free endpoints (/api/enhance, /api/tags) have their own bucket, six times the generate limit."""

    scope = "free"

    def limit(self):
        return settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE * 6
