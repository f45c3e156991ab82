"""Does the money add up? Read-only checks of the ledger's invariant, run by `manage.py
ledger_check` and its daily beat task (generation.integrity composes them with the key checks).

Invariant checked here: every Wallet.balance == SUM(LedgerEntry.amount) of its user, and no user
has entries without a wallet. Each check is one SQL statement, so it reads one snapshot: billing.ledger
changes a wallet and books the entry that explains it in one transaction, and a single statement
never sees half of one. The check runs under live traffic without false alarms.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import DecimalField, F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Round

from .models import MONEY, LedgerEntry, Wallet

ZERO = Value(Decimal("0"), output_field=DecimalField(**MONEY))


@dataclass(frozen=True)
class Difference:
    """One number that disagrees with the records that should explain it, in USD."""

    subject: str  # what is wrong, e.g. "wallet of alice@example.com"
    recorded: Decimal  # the stored number (balance, counter)
    expected: Decimal  # what its entries add up to
    explained_by: str  # which entries, e.g. "ledger entries"

    def __str__(self):
        return (f"{self.subject}: {self.recorded:.6f} recorded, its {self.explained_by} add up to "
                f"{self.expected:.6f} (off by {self.recorded - self.expected:+.6f})")


def sum_of(queryset, field: str, *, by: str):
    """A correlated subquery: SUM(field) of `queryset`'s rows (all sharing one value of `by`, the
    column the outer query correlates on), 0 when there are none."""
    total = queryset.order_by().values(by).annotate(total=Sum(field)).values("total")
    return Coalesce(Subquery(total, output_field=DecimalField(**MONEY)), ZERO)


def _at_six_places(queryset, *, stored: str, summed: str):
    # SQLite keeps decimals as floats whose last bits depend on the order of additions;
    # PostgreSQL is exact either way.
    return queryset.alias(_stored=Round(F(stored), precision=6), _summed=Round(F(summed), precision=6))


def differs_from(queryset, *, stored: str, summed: str):
    """Rows where `stored` and `summed` differ at the ledger's six places."""
    return _at_six_places(queryset, stored=stored, summed=summed).exclude(_stored=F("_summed"))


def exceeds(queryset, *, stored: str, summed: str):
    """Rows where `stored` is above `summed` at the ledger's six places."""
    return _at_six_places(queryset, stored=stored, summed=summed).filter(_stored__gt=F("_summed"))


def wallet_differences() -> list[Difference]:
    """Wallets whose cached balance is not the sum of their user's ledger, and users with ledger
    entries but no wallet."""
    wallets = Wallet.objects.select_related("user").annotate(
        ledger_total=sum_of(LedgerEntry.objects.filter(user=OuterRef("user")), "amount", by="user"))
    wallets = differs_from(wallets, stored="balance", summed="ledger_total").order_by("user_id")
    differences = [
        Difference(subject=f"wallet of {wallet.user}", recorded=wallet.balance, expected=wallet.ledger_total,
                   explained_by="ledger entries")
        for wallet in wallets
    ]
    orphans = (LedgerEntry.objects.filter(user__wallet__isnull=True).order_by().values("user__email")
               .annotate(total=Sum("amount")).order_by("user__email"))
    differences += [
        Difference(subject=f"{row['user__email']} has no wallet", recorded=Decimal("0"), expected=row["total"],
                   explained_by="ledger entries")
        for row in orphans
    ]
    return differences
