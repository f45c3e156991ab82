"""How the API keys page shows each key's limits and what it spent."""

import datetime
from decimal import Decimal

from django.db.models import Sum
from django.utils import dateformat, timezone

from accounts.models import ApiKey
from generation.models import Generation

from .templatetags.animeapi import usd

def spent_today_usd(*, api_key: ApiKey) -> Decimal:
    """What the key has spent since midnight UTC, the window of its daily cap.

    Summed from its generations (refunded ones cost 0): the cap's own counter exists only while
    the key has a daily cap.
    """
    midnight = timezone.now().astimezone(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    spent = Generation.objects.filter(api_key=api_key, created_at__gte=midnight).aggregate(spent=Sum("cost_usd"))
    return spent["spent"] or Decimal(0)


def limits_summary(api_key: ApiKey) -> str:
    """One line for the keys list, e.g. "$1.00/day · $5.00 total ($0.45 spent) · expires Dec 1"; "" without limits."""
    parts = []
    if api_key.spend_cap_daily_usd is not None:
        parts.append(f"{usd(api_key.spend_cap_daily_usd)}/day")
    if api_key.spend_cap_total_usd is not None:
        parts.append(f"{usd(api_key.spend_cap_total_usd)} total ({usd(api_key.spent_total_usd)} spent)")
    if api_key.expires_at is not None:
        parts.append(f"{'expired' if api_key.is_expired else 'expires'} {_short_date(api_key.expires_at)}")
    networks = _networks(api_key)
    if len(networks) == 1:
        parts.append(f"{networks[0]} only")
    elif networks:
        parts.append(f"{len(networks)} IP networks")
    return " · ".join(parts)


def _networks(api_key: ApiKey) -> list[str]:
    return [item.strip() for item in api_key.allowed_networks.split(",") if item.strip()]


def _short_date(moment: datetime.datetime) -> str:
    # The page speaks UTC throughout, like the daily caps and quotas.
    moment = moment.astimezone(datetime.UTC)
    same_year = moment.year == timezone.now().astimezone(datetime.UTC).year
    return dateformat.format(moment, "M j" if same_year else "M j, Y")
