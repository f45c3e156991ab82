import secrets
from decimal import Decimal

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone

from billing.models import MONEY


def new_webhook_secret():
    return "whsec_" + secrets.token_urlsafe(32)


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)

    def get_by_natural_key(self, email):
        return self.get(email__iexact=email)


class User(AbstractUser):
    """A customer or an admin. The e-mail address is the login."""

    username = None
    email = models.EmailField("e-mail address", unique=True)
    # Signs the completion webhooks we send this user (as Stripe's whsec_ does); kept readable
    # because signing needs it, and shown on the API keys page.
    webhook_secret = models.CharField(max_length=64, default=new_webhook_secret, editable=False)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []

    objects = UserManager()

    class Meta:
        constraints = [
            # Case-insensitive uniqueness: Me@x.com and me@x.com are one person.
            models.UniqueConstraint(models.functions.Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self):
        return self.email


class ApiKeyQuerySet(models.QuerySet):
    def live(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A bearer key. Only its SHA-256 and a short visible prefix are stored; the key is shown once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=20, db_index=True, help_text="Visible start of the key")
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    is_test = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Limits the owner sets per key (all optional). Spend is counted in USD, in the same
    # transaction as the charge, so concurrent requests cannot overshoot a cap.
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_networks = models.TextField(blank=True, help_text="IP networks allowed to use the key, comma-separated CIDRs; empty: any")
    spend_cap_daily_usd = models.DecimalField(**MONEY, null=True, blank=True, help_text="USD per UTC day; empty: no cap")
    spend_cap_total_usd = models.DecimalField(**MONEY, null=True, blank=True, help_text="USD over the key's life; empty: no cap")
    spent_total_usd = models.DecimalField(**MONEY, default=Decimal("0"), editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_revoked(self):
        return self.revoked_at is not None

    @property
    def is_expired(self):
        return self.expires_at is not None and self.expires_at <= timezone.now()


class ApiKeyDailySpend(models.Model):
    """What a key spent on one UTC day, for its daily cap."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="daily_spend")
    day = models.DateField()
    spent_usd = models.DecimalField(**MONEY, default=Decimal("0"))

    class Meta:
        constraints = [
            # One counter per key and day: the conditional UPDATE on it is the cap's lock.
            models.UniqueConstraint(fields=["api_key", "day"], name="apikey_daily_spend_unique"),
        ]
