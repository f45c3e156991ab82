"""What the dashboard pages share: ownership checks, htmx-aware rendering, the dashboard's numbers."""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.base import ModelBase
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from accounts.models import ApiKey
from billing import ledger
from generation import limits
from generation.models import Generation

RECENT_GENERATIONS = 6
KEYS_AT_A_GLANCE = 5


def owned_or_404(model_or_queryset, *, user, **lookup):
    """The user's own row, or 404: another user's id must look exactly like one that does not exist."""
    queryset = (
        model_or_queryset._default_manager.all() if isinstance(model_or_queryset, ModelBase) else model_or_queryset
    )
    return get_object_or_404(queryset.filter(user=user), **lookup)


def render_page(request, template_name, context, *, partial, status=200):
    """The whole page, or only `partial` when htmx swaps it in.

    A history-restore request (the user pressed Back after htmx evicted its cache) needs the whole
    page, and caches must not mix the two answers (Vary: HX-Request).
    """
    if request.htmx and not request.htmx.history_restore_request:
        template_name = f"{template_name}#{partial}"
    response = render(request, template_name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def public_base_url(request) -> str:
    """Where developers reach the API: PUBLIC_BASE_URL, else the host this page was served from."""
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


@dataclass(frozen=True)
class Usage:
    images: int
    spend_usd: Decimal


@dataclass(frozen=True)
class DashboardSummary:
    balance: Decimal
    today: Usage
    month: Usage
    daily_used: int
    daily_limit: int
    recent: list
    keys: list
    live_key_count: int

    @property
    def daily_remaining(self) -> int:
        return max(0, self.daily_limit - self.daily_used)


def usage_since(*, user, since: datetime.datetime) -> Usage:
    """Images delivered and money charged since `since`. Failed attempts are refunded (cost 0)."""
    totals = Generation.objects.filter(user=user, created_at__gte=since).aggregate(
        images=Count("pk", filter=Q(status=Generation.Status.SUCCEEDED)),
        spend=Sum("cost_usd"),
    )
    return Usage(images=totals["images"], spend_usd=totals["spend"] or Decimal(0))


def dashboard_summary(*, user) -> DashboardSummary:
    # Days and months are UTC, like the daily limit that resets at midnight UTC.
    now = timezone.now().astimezone(datetime.UTC)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = usage_since(user=user, since=start_of_day)
    try:
        daily_used = limits.daily_used(user_id=user.pk)
    except limits.LimitsUnavailable:
        daily_used = today.images  # the limit store is down; today's images are the same count
    live_keys = ApiKey.objects.live().filter(user=user)
    return DashboardSummary(
        balance=ledger.balance(user=user),
        today=today,
        month=usage_since(user=user, since=start_of_day.replace(day=1)),
        daily_used=daily_used,
        daily_limit=settings.ANIMEAPI_DAILY_LIMIT,
        recent=list(Generation.objects.filter(user=user).select_related("api_key")[:RECENT_GENERATIONS]),
        keys=list(live_keys[:KEYS_AT_A_GLANCE]),
        live_key_count=live_keys.count(),
    )
