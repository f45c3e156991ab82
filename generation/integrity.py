"""The whole money check: wallets against the ledger (billing.integrity) and API keys' spend
counters against the generations charged to them. `manage.py ledger_check` and the daily beat task
both call money_differences(); it lives here because only this app sees keys, charges and the ledger
together (dashboard -> generation -> accounts -> billing).

Key counters (accounts.apikeys) move in the transaction that charges or refunds the generation,
and a generation's cost_usd is what it was charged (0 once refunded), so:
- ApiKey.spent_total_usd == SUM(cost_usd) of the key's generations, always;
- an ApiKeyDailySpend counter never exceeds SUM(cost_usd) of that key's generations of that UTC
  day. It may be lower: the counter exists only while the key has a daily cap, so charges made
  before the cap was set are not in it.
Each check is one statement (one snapshot), so it runs under live traffic without false alarms.
"""

from django.db.models import OuterRef

from accounts.models import ApiKey, ApiKeyDailySpend
from billing.integrity import Difference, differs_from, exceeds, sum_of, wallet_differences

from .models import Generation


def key_spend_differences() -> list[Difference]:
    """Keys whose total spend counter is not the sum of their charges, and daily counters above
    the day's charges."""
    keys = ApiKey.objects.select_related("user").annotate(
        charged=sum_of(Generation.objects.filter(api_key=OuterRef("pk")), "cost_usd", by="api_key"))
    differences = [
        Difference(subject=f"key {api_key.prefix} (id {api_key.pk}, {api_key.user}) total spend",
                   recorded=api_key.spent_total_usd, expected=api_key.charged, explained_by="generations' charges")
        for api_key in differs_from(keys, stored="spent_total_usd", summed="charged").order_by("pk")
    ]
    days = ApiKeyDailySpend.objects.select_related("api_key__user").annotate(
        charged=sum_of(Generation.objects.filter(api_key=OuterRef("api_key"), created_at__date=OuterRef("day")),
                       "cost_usd", by="api_key"))
    differences += [
        Difference(subject=f"key {counter.api_key.prefix} (id {counter.api_key_id}, {counter.api_key.user}) "
                           f"spend on {counter.day:%Y-%m-%d}",
                   recorded=counter.spent_usd, expected=counter.charged, explained_by="generations' charges that day")
        for counter in exceeds(days, stored="spent_usd", summed="charged").order_by("api_key_id", "day")
    ]
    return differences


def money_differences() -> list[Difference]:
    """Every disagreement between a stored balance or counter and the records that explain it;
    empty when the books are clean."""
    return wallet_differences() + key_spend_differences()
