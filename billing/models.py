import uuid
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
    # The owner's alert level: falling below it sends one e-mail per crossing (billing.alerts).
    low_balance_threshold = models.DecimalField(**MONEY, null=True, blank=True, help_text="USD; empty: no alert")
    # A copy of AutoRecharge.threshold while auto-recharge is on and a card is saved, NULL otherwise
    # (billing.autorecharge keeps it): the wallet UPDATE returns it, so judging a crossing costs no query.
    auto_recharge_below = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="USD; empty: auto-recharge off or no saved card"
    )

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
        AUTO_RECHARGE = "auto_recharge", "Auto-recharge"

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


class TopUp(models.Model):
    """A Stripe Checkout payment a user started to add money to their balance.

    It records what we asked Stripe for and where it stands; the money itself is the TOPUP
    ledger entry whose reference is `checkout_session_id`. Refunds and disputes of its charge are
    found through `payment_intent_id`.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for payment"
        PROCESSING = "processing", "Payment being confirmed"  # completed, async payment not settled
        PAID = "paid", "Paid"
        FAILED = "failed", "Payment failed"
        EXPIRED = "expired", "Expired"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="topups")
    checkout_session_id = models.CharField(max_length=255, unique=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, default="")
    amount = models.DecimalField(**MONEY, help_text="USD asked for at Checkout")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    receipt_url = models.URLField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The billing page lists a user's top-ups newest first.
            models.Index(fields=["user", "-created_at"], name="topup_user_created"),
        ]
        constraints = [
            # Refunds and disputes find their top-up by payment intent: one intent, one top-up.
            models.UniqueConstraint(
                fields=["payment_intent_id"],
                condition=~models.Q(payment_intent_id=""),
                name="topup_payment_intent_unique",
            ),
            # Checkout refuses a zero amount; a zero row here would be a bug, not a payment.
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="topup_amount_positive"),
        ]

    def __str__(self):
        return f"{self.user} ${self.amount} {self.status} ({self.checkout_session_id})"


class StripeEvent(models.Model):
    """Every event Stripe delivered to the webhook, stored before it is handled, with what came of it.

    `stripe_event_id` is unique in the database, so a redelivery finds the stored row instead of
    racing a check-then-insert; booking money is exactly-once on its own (ledger references).
    """

    class Outcome(models.TextChoices):
        RECEIVED = "received", "Received, not handled yet"
        BOOKED = "booked", "Money booked"
        ALREADY_BOOKED = "already_booked", "Already booked"
        RECORDED = "recorded", "Recorded, no money moved"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed (Stripe retries)"

    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivery_count = models.PositiveIntegerField(default=1, help_text="How many times Stripe sent it")
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RECEIVED)
    detail = models.TextField(blank=True, help_text="What was booked, or why nothing was, or the error")

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.type} {self.stripe_event_id} ({self.outcome})"


class AccountFlag(models.Model):
    """A reason to look at an account, raised by a payment dispute. Staff review these in the admin."""

    class Reason(models.TextChoices):
        DISPUTE = "dispute", "Payment disputed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="account_flags")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    reference = models.CharField(max_length=255, unique=True, help_text="The Stripe dispute id")
    detail = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=50, blank=True, help_text="Stripe's final dispute status")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.user}: {self.get_reason_display()} ({self.reference})"


class StripeCustomer(models.Model):
    """The user's Stripe Customer, created once, and the card saved on it for off-session charges.

    Only what the billing page shows is kept about the card: brand, last four digits, expiry.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="stripe_customer")
    customer_id = models.CharField(max_length=255, unique=True)
    payment_method_id = models.CharField(max_length=255, blank=True, default="", help_text="Empty: no saved card")
    card_brand = models.CharField(max_length=20, blank=True, default="")
    card_last4 = models.CharField(max_length=4, blank=True, default="")
    card_exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    card_exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    card_saved_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.user} {self.customer_id}"

    @property
    def has_card(self) -> bool:
        return bool(self.payment_method_id)


class AutoRecharge(models.Model):
    """A user's auto-recharge settings: charge the saved card `amount` when the balance falls below
    `threshold`, at most `monthly_cap` per calendar month (UTC)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="auto_recharge")
    enabled = models.BooleanField(default=False)
    threshold = models.DecimalField(**MONEY, help_text="USD; recharge when the balance falls below this")
    amount = models.DecimalField(**MONEY, help_text="USD charged to the saved card each time")
    monthly_cap = models.DecimalField(**MONEY, help_text="USD; the most auto-recharge may charge per calendar month")
    # Why we switched it off (a declined card, authentication needed); shown as a banner until the
    # user saves settings or a card again.
    stopped_reason = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Stripe's smallest USD charge is $0.50; a zero or negative setting would be a bug.
            models.CheckConstraint(condition=models.Q(amount__gt=0, threshold__gt=0, monthly_cap__gt=0),
                                   name="auto_recharge_amounts_positive"),
        ]

    def __str__(self):
        state = "on" if self.enabled else "off"
        return f"{self.user}: {state}, ${self.amount} below ${self.threshold}"


class Recharge(models.Model):
    """One auto-recharge attempt: an off-session PaymentIntent on the saved card.

    The row is written before Stripe is called and its uuid is in the idempotency key, so a retried
    task gets Stripe's first answer instead of a second charge. The money is the AUTO_RECHARGE
    ledger entry whose reference is `payment_intent_id`, booked from Stripe's webhook only.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Recorded, Stripe not answered yet"
        PROCESSING = "processing", "Charged, waiting for Stripe's confirmation"
        SUCCEEDED = "succeeded", "Succeeded, credited"
        FAILED = "failed", "Failed"
        CAPPED = "capped", "Not charged: monthly cap reached"

    IN_FLIGHT = (Status.PENDING, Status.PROCESSING)
    # What counts against the monthly cap: everything that charged or may still charge.
    COUNTS_AGAINST_CAP = (Status.PENDING, Status.PROCESSING, Status.SUCCEEDED)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="recharges")
    # In the idempotency key instead of the id: ids repeat across deployments sharing a Stripe
    # account (staging, a restored backup), and Stripe would answer one with the other's payment.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    amount = models.DecimalField(**MONEY, help_text="USD")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    payment_intent_id = models.CharField(max_length=255, blank=True, default="")
    failure_code = models.CharField(max_length=100, blank=True, default="")
    failure_message = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The monthly cap sums a user's recharges since the first of the month.
            models.Index(fields=["user", "created_at"], name="recharge_user_created"),
        ]
        constraints = [
            # At most one recharge in flight per user, whatever races the trigger.
            models.UniqueConstraint(fields=["user"], condition=models.Q(status__in=["pending", "processing"]),
                                    name="recharge_one_in_flight_per_user"),
            # Refunds and disputes find their recharge by payment intent.
            models.UniqueConstraint(fields=["payment_intent_id"], condition=~models.Q(payment_intent_id=""),
                                    name="recharge_payment_intent_unique"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="recharge_amount_positive"),
        ]

    def __str__(self):
        return f"{self.user} ${self.amount} {self.status} ({self.payment_intent_id or 'no intent'})"
