"""What a new account gets."""

from decimal import Decimal

from django.conf import settings

from billing import ledger


def grant_signup_credit(*, user) -> bool:
    """Book SIGNUP_CREDIT_USD once per user (the reference is unique); False when none was booked."""
    amount = settings.SIGNUP_CREDIT_USD
    if amount <= Decimal(0):
        return False
    try:
        ledger.credit(user=user, amount=amount, kind=ledger.Kind.SIGNUP_CREDIT,
                      reference=f"signup-credit:{user.pk}", memo="Trial credit")
    except ledger.DuplicateReference:
        return False
    return True
