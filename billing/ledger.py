"""The only way money moves. Every function is atomic and leaves exactly one ledger entry.

Invariant: Wallet.balance == SUM(LedgerEntry.amount) for each user, always, because both change
in one transaction here and nowhere else.
"""

from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

from . import alerts, autorecharge
from .models import LedgerEntry, Wallet

Kind = LedgerEntry.Kind


class InsufficientBalance(Exception):
    pass


class DuplicateReference(Exception):
    """An entry with this reference is already booked."""


def _as_usd(amount) -> Decimal:
    amount = Decimal(amount)
    if not amount.is_finite():
        raise ValueError("amount must be finite")
    return amount.quantize(Decimal("0.000001"))


def _add_to_wallet(*, user, amount: Decimal, kind: str, require_funds: bool) -> Decimal | None:
    """Move the cached balance by `amount` in one statement; the new balance, or None when
    `require_funds` and the balance does not cover it (the conditional UPDATE is what makes two
    concurrent spenders unable to take the same cent). A drop is passed to billing.alerts with
    the before and after of this very statement, so a crossing is seen exactly once; so is a
    CHARGE's drop to billing.autorecharge, for the auto-recharge threshold: only spending may
    charge the card again, never a refund, a dispute or an admin's correction taking money back."""
    condition = " AND balance >= %s" if require_funds else ""
    params = [amount, user.pk] + ([-amount] if require_funds else [])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE billing_wallet SET balance = balance + %s, updated_at = CURRENT_TIMESTAMP "
            f"WHERE user_id = %s{condition} RETURNING balance, low_balance_threshold, auto_recharge_below",
            params,
        )
        row = cursor.fetchone()
    if row is None and not require_funds:
        Wallet.objects.get_or_create(user=user)
        return _add_to_wallet(user=user, amount=amount, kind=kind, require_funds=False)
    if row is None:
        return None
    # str() first: SQLite hands back a float, PostgreSQL a Decimal.
    balance = _as_usd(str(row[0]))
    if amount < 0:
        alerts.notice_drop(user_id=user.pk, before=balance - amount, after=balance,
                           threshold=None if row[1] is None else _as_usd(str(row[1])))
        if kind == Kind.CHARGE:
            autorecharge.notice_drop(user_id=user.pk, before=balance - amount, after=balance,
                                     below=None if row[2] is None else _as_usd(str(row[2])))
    return balance


def _book(*, user, amount: Decimal, kind: str, reference: str, memo: str, require_funds: bool,
          savepoint: bool = True) -> LedgerEntry:
    """Write the entry and move the wallet, in one transaction.

    With savepoint=False (the hot path) a duplicate reference spoils an enclosing transaction:
    only use it where the caller lets DuplicateReference propagate.
    """
    try:
        with transaction.atomic(savepoint=savepoint):
            balance_after = _add_to_wallet(user=user, amount=amount, kind=kind, require_funds=require_funds)
            if balance_after is None:
                entry = None
            else:
                entry = LedgerEntry.objects.create(
                    user=user, kind=kind, amount=amount, balance_after=balance_after,
                    reference=reference, memo=memo[:255],
                )
    except IntegrityError as exc:
        # Leaving the atomic block with the error has undone the balance change too.
        if "reference" in str(exc):
            raise DuplicateReference(reference) from exc
        raise
    if entry is None:
        raise InsufficientBalance()
    return entry


def credit(*, user, amount, kind: str, reference: str, memo: str = "") -> LedgerEntry:
    """Add money (top-up, refund, adjustment). Raises DuplicateReference if already booked."""
    amount = _as_usd(amount)
    if amount <= 0:
        raise ValueError("credit amount must be positive")
    return _book(user=user, amount=amount, kind=kind, reference=reference, memo=memo, require_funds=False)


def debit(*, user, amount, kind: str, reference: str, memo: str = "") -> LedgerEntry:
    """Take money whatever the balance (a refunded payment, a dispute): it may go negative."""
    amount = _as_usd(amount)
    if amount <= 0:
        raise ValueError("debit amount must be positive")
    return _book(user=user, amount=-amount, kind=kind, reference=reference, memo=memo, require_funds=False)


def reserve(*, user, amount, reference: str, memo: str = "") -> LedgerEntry:
    """Charge up front, only if the balance covers it. Raises InsufficientBalance otherwise
    (after its own block, so an enclosing transaction stays usable)."""
    amount = _as_usd(amount)
    if amount <= 0:
        raise ValueError("reserve amount must be positive")
    return _book(user=user, amount=-amount, kind=Kind.CHARGE, reference=reference, memo=memo, require_funds=True,
                 savepoint=False)


def refund(*, charge: LedgerEntry, memo: str = "") -> LedgerEntry | None:
    """Give a charge back, once. Returns None when it was already refunded."""
    if charge.kind != Kind.CHARGE:
        raise ValueError("only charges can be refunded")
    try:
        return _book(
            user=charge.user, amount=-charge.amount, kind=Kind.REFUND,
            reference=f"refund:{charge.reference}", memo=memo, require_funds=False,
        )
    except DuplicateReference:
        return None


def refund_reference(*, reference: str, memo: str = "") -> Decimal | None:
    """Refund the charge booked under `reference`, once: the amount given back, or None when
    there was no such charge or it was already refunded."""
    charge = LedgerEntry.objects.filter(reference=reference, kind=Kind.CHARGE).select_related("user").first()
    if charge is None:
        return None
    refunded = refund(charge=charge, memo=memo)
    return None if refunded is None else refunded.amount


def balance_after(*, reference: str) -> Decimal | None:
    """The balance right after the entry booked under `reference` (None: no such entry)."""
    return LedgerEntry.objects.filter(reference=reference).values_list("balance_after", flat=True).first()


def adjust(*, user, amount, reference: str, memo: str) -> LedgerEntry:
    """An admin's correction, either sign."""
    amount = _as_usd(amount)
    if amount == 0:
        raise ValueError("an adjustment cannot be zero")
    return _book(user=user, amount=amount, kind=Kind.ADJUSTMENT, reference=reference, memo=memo, require_funds=False)


def balance(*, user) -> Decimal:
    value = Wallet.objects.filter(user=user).values_list("balance", flat=True).first()
    return value if value is not None else Decimal("0")


def ledger_sum(*, user) -> Decimal:
    return LedgerEntry.objects.filter(user=user).aggregate(total=Sum("amount"))["total"] or Decimal("0")
