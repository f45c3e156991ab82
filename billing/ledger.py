"""The only way money moves. Every function is atomic and leaves exactly one ledger entry.

Invariant: Wallet.balance == SUM(LedgerEntry.amount) for each user, always, because both change
in one transaction here and nowhere else.
"""

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

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


def _wallet_id(user) -> int:
    wallet, _ = Wallet.objects.get_or_create(user=user)
    return wallet.pk


def _book(*, user, amount: Decimal, kind: str, reference: str, memo: str, require_funds: bool) -> LedgerEntry:
    wallet_id = _wallet_id(user)
    with transaction.atomic():
        wallets = Wallet.objects.filter(pk=wallet_id)
        if require_funds:
            # One conditional UPDATE: of two concurrent spenders only one can take the same cent.
            wallets = wallets.filter(balance__gte=-amount)
        if not wallets.update(balance=F("balance") + amount):
            raise InsufficientBalance()
        balance_after = Wallet.objects.values_list("balance", flat=True).get(pk=wallet_id)
        try:
            with transaction.atomic():
                return LedgerEntry.objects.create(
                    user=user, kind=kind, amount=amount, balance_after=balance_after,
                    reference=reference, memo=memo[:255],
                )
        except IntegrityError as exc:
            if LedgerEntry.objects.filter(reference=reference).exists():
                # Leaving the outer atomic with an exception undoes the balance change too.
                raise DuplicateReference(reference) from exc
            raise


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
    """Charge up front, only if the balance covers it. Raises InsufficientBalance otherwise."""
    amount = _as_usd(amount)
    if amount <= 0:
        raise ValueError("reserve amount must be positive")
    return _book(user=user, amount=-amount, kind=Kind.CHARGE, reference=reference, memo=memo, require_funds=True)


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
