from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

# USD with six decimal places: the price ($0.009) and any fraction of it are exact.
MONEY = {"max_digits": 18, "decimal_places": 6}


class Wallet(models.Model):
    """A user's cached balance in USD.

    It is a cache of SUM(LedgerEntry.amount) for the user and changes only inside the same
    transaction as the ledger entry that explains it (billing.ledger is the only writer).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallet")
    balance = models.DecimalField(**MONEY, default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.user} ${self.balance}"


class LedgerEntry(models.Model):
    """One movement of money, in USD. Append-only: a correction is a new entry, never an edit.

    `reference` is unique, so booking the same event twice (a replayed webhook, a retried
    request) fails in the database instead of depending on every caller checking first.
    On PostgreSQL a trigger also refuses UPDATE and DELETE of rows (migration 0002).
    """

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Generation refund"
        ADJUSTMENT = "adjustment", "Adjustment"
        SIGNUP_CREDIT = "signup_credit", "Signup credit"
        PAYMENT_REFUND = "payment_refund", "Payment refunded"
        DISPUTE = "dispute", "Dispute"
        DISPUTE_WON = "dispute_won", "Dispute won"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(**MONEY, help_text="USD; positive adds to the balance, negative takes")
    balance_after = models.DecimalField(**MONEY, help_text="The user's balance right after this entry, USD")
    reference = models.CharField(max_length=255, unique=True)
    memo = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            # The billing page lists a user's entries newest first.
            models.Index(fields=["user", "-created_at"], name="ledger_user_created"),
        ]
        constraints = [
            # A zero entry explains nothing and would only hide a bug.
            models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_amount_nonzero"),
        ]

    def __str__(self):
        return f"{self.kind} {self.amount} ({self.reference})"
