import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.models import MONEY

ORIENTATIONS = {
    "portrait": (832, 1280),
    "square": (1024, 1024),
    "landscape": (1280, 832),
}


def charge_reference(generation_id) -> str:
    """The ledger reference of a generation's charge (its refund is "refund:" + this)."""
    return f"generation:{generation_id}"


class Generation(models.Model):
    """One attempt at an image: every request that got past validation leaves one."""

    class Status(models.TextChoices):
        PENDING = "pending"  # charged, waiting for a worker
        RUNNING = "running"  # a worker has claimed it
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # refunded

    class Orientation(models.TextChoices):
        PORTRAIT = "portrait"
        SQUARE = "square"
        LANDSCAPE = "landscape"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="generations",
        help_text="Empty for the dashboard's playground",
    )
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    prompt = models.TextField()
    enhanced_prompt = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True, help_text="All the backend got: the family's, the NSFW one, the user's")
    user_negative_prompt = models.TextField(blank=True, help_text="The request's negative_prompt, as sent")
    catalog_model = models.CharField(max_length=64, blank=True,
                                     help_text="The GENERATION_MODELS id chosen (empty before models could be chosen)")
    batch_id = models.UUIDField(null=True, blank=True, db_index=True,
                                help_text="Shared by the images of one request with n > 1")
    end_user = models.CharField(max_length=256, blank=True, help_text="OpenAI's `user` field, as sent")
    orientation = models.CharField(max_length=10, choices=Orientation.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    allow_nsfw = models.BooleanField()
    enhance = models.BooleanField()
    is_test = models.BooleanField(default=False)
    seed = models.BigIntegerField(null=True, blank=True)
    backend = models.CharField(max_length=100)
    model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    cost_usd = models.DecimalField(**MONEY, help_text="What the user was charged, USD (0 once refunded)")
    backend_cost_usd = models.DecimalField(**MONEY, null=True, blank=True, help_text="What the backend charged us")
    error_code = models.CharField(max_length=40, blank=True)
    error_detail = models.TextField(blank=True, help_text="For admins; never shown to the user")
    image = models.CharField(max_length=255, blank=True, help_text="Storage name of the WEBP")
    image_deleted_at = models.DateTimeField(null=True, blank=True, help_text="Deleted by its owner or by retention")
    details = models.JSONField(default=dict, blank=True)
    is_async = models.BooleanField(default=False, help_text="Answered 202 at once; fetched or pushed later")
    quota_day = models.DateField(null=True, blank=True,
                                 help_text="The UTC day whose daily-quota unit this generation holds (given back if it fails)")
    webhook_url = models.URLField(max_length=2000, blank=True)
    base_url = models.CharField(max_length=200, blank=True, help_text="Where the request came in, for image URLs")
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    queue_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Waiting for a worker")
    generate_ms = models.PositiveIntegerField(null=True, blank=True, help_text="The backend's own time")
    total_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Request in to answer out")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The usage history lists a user's generations newest first.
            models.Index(fields=["user", "-created_at"], name="generation_user_created"),
        ]

    def __str__(self):
        return f"{self.id} {self.status}"

    @property
    def charge_reference(self):
        return charge_reference(self.id)


class IdempotencyRecord(models.Model):
    """The first answer to an Idempotency-Key, replayed for retries within 24 hours (as Stripe does)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=300, help_text="The client's key, prefixed with test: or live:")
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of method, path and body")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty while in progress")
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # One record per key and user: the insert is the lock that makes retries safe.
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique"),
        ]


class ContentPolicyRefusal(models.Model):
    """One prompt refused by the content policy: who, where and which terms, for the admins.

    The prompt itself is not kept (only its length and a hash, to see the same prompt retried).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    endpoint = models.CharField(max_length=40, help_text="generate, playground, enhance, or worker (the enhanced prompt)")
    minor_term = models.CharField(max_length=100)
    sexual_term = models.CharField(max_length=100)
    prompt_sha256 = models.CharField(max_length=64)
    prompt_length = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # The admin counts a user's refusals, newest first.
            models.Index(fields=["user", "-created_at"], name="policy_refusal_user_created"),
        ]

    def __str__(self):
        return f"{self.user_id} {self.minor_term}+{self.sexual_term}"
