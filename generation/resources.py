"""How a Generation looks from outside: one serializer per answer, used both to write the answer
and to document it in the OpenAPI schema (so the two cannot drift apart)."""

from decimal import Decimal

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing import ledger, pricing
from config.errors import error_body

from . import catalog, images, limits
from .models import ORIENTATIONS, Generation
from .safety import policy

Status = Generation.Status

ERRORS = {
    policy.REFUSAL_CODE: (400, policy.REFUSAL_MESSAGE),
    "INSUFFICIENT_BALANCE": (402, "Insufficient balance"),
    "KEY_SPEND_CAP_REACHED": (402, "This API key has reached its spend cap"),
    "NSFW_CONTENT_BLOCKED": (422, "The image was flagged as NSFW and withheld; you were not charged"),
    "GENERATION_FAILED": (500, "Generation failed"),
}


def balance_after_charge(generation: Generation) -> Decimal:
    """The user's balance right after this generation's charge (the reference's balance_usd)."""
    balance = getattr(generation, "balance_after", None)
    if balance is None:
        balance = ledger.balance_after(reference=generation.charge_reference)
    if balance is None:  # a test key's generation: nothing was charged
        balance = ledger.balance(user=generation.user)
    return balance


def error_for(generation: Generation) -> tuple[int, dict]:
    status, message = ERRORS.get(generation.error_code, ERRORS["GENERATION_FAILED"])
    return status, error_body(message, generation.error_code or "GENERATION_FAILED")


class ErrorBody(serializers.Serializer):
    error = serializers.CharField()
    code = serializers.CharField()


class GenerateOutput(serializers.Serializer):
    """The sync answer: the reference's four fields, then ours (added fields only)."""

    image_url = serializers.SerializerMethodField()
    enhanced_prompt = serializers.CharField()
    # A JSON number, as the reference says; the ledger itself stays Decimal.
    balance_usd = serializers.SerializerMethodField()
    generation_time_ms = serializers.IntegerField(source="total_ms")
    id = serializers.UUIDField(help_text="The generation, for GET/DELETE /api/generations/{id}")
    cost_usd = serializers.FloatField(help_text="What this image cost (0 for test keys)")
    seed = serializers.IntegerField(help_text="Send it back to reproduce the image")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    model = serializers.CharField(help_text="The checkpoint the backend ran")
    model_id = serializers.CharField(source="catalog_model", help_text="The id from GET /api/models")
    negative_prompt = serializers.CharField(source="user_negative_prompt", help_text="Yours, as sent")

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, generation):
        if not generation.image:
            return None  # deleted by its owner or by retention
        return images.image_url(generation.image, request=self.context.get("request"), base_url=generation.base_url)

    @extend_schema_field(OpenApiTypes.DOUBLE)
    def get_balance_usd(self, generation):
        return float(balance_after_charge(generation))


# The fields of GenerationResource shown whatever the status; the sync answer's join them once
# it succeeded, `error` once it failed.
RESOURCE_FIELDS = ("id", "status", "created_at", "prompt", "orientation", "allowNSFW", "enhance", "negative_prompt",
                   "model_id", "batch_id")


class GenerationResource(GenerateOutput):
    """GET /api/generations/{id}, the list's items and the webhook's data: the status, and once
    finished the same fields as the sync answer (or the error)."""

    status = serializers.ChoiceField(choices=Status.choices)
    created_at = serializers.DateTimeField()
    prompt = serializers.CharField()
    orientation = serializers.ChoiceField(choices=list(ORIENTATIONS))
    allowNSFW = serializers.BooleanField(source="allow_nsfw")  # noqa: N815 (the reference's name)
    enhance = serializers.BooleanField()
    batch_id = serializers.UUIDField(allow_null=True, help_text="Shared by the images of one request with n > 1")
    error = serializers.SerializerMethodField(help_text="Once failed: why, in the API's error shape")

    class Meta:
        # Everything but RESOURCE_FIELDS depends on the status.
        optional = ("image_url", "enhanced_prompt", "balance_usd", "generation_time_ms", "cost_usd", "seed", "width",
                    "height", "model", "error")

    def get_fields(self):
        fields = super().get_fields()
        for name in self.Meta.optional:
            fields[name].required = False
        return fields

    @extend_schema_field(ErrorBody)
    def get_error(self, generation):
        return error_for(generation)[1]

    def to_representation(self, generation):
        if generation.status == Status.SUCCEEDED:
            shown = set(self.fields) - {"error"}
        elif generation.status == Status.FAILED:
            shown = {*RESOURCE_FIELDS, "error"}
        else:
            shown = set(RESOURCE_FIELDS)
        body = {}
        for name, field in self.fields.items():
            if name in shown:
                attribute = field.get_attribute(generation)
                body[name] = None if attribute is None else field.to_representation(attribute)
        return body


class GenerationPage(serializers.Serializer):
    """GET /api/generations: a page, newest first, with cursors to the next and previous pages."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = GenerationResource(many=True)


def answer_for(generation: Generation, *, request=None) -> tuple[int, dict]:
    """The synchronous answer: status code and body."""
    if generation.status == Status.SUCCEEDED:
        return 200, GenerateOutput(generation, context={"request": request}).data
    return error_for(generation)


class BatchImage(serializers.Serializer):
    id = serializers.UUIDField()
    image_url = serializers.URLField(allow_null=True)
    seed = serializers.IntegerField()


class FailedImage(serializers.Serializer):
    id = serializers.UUIDField()
    code = serializers.CharField(help_text="Why; this image was refunded and its daily unit given back")


class GenerateBatchOutput(GenerateOutput):
    """The sync answer for n > 1: the first delivered image's fields, then every image."""

    images = BatchImage(many=True, required=False, help_text="With n > 1: the delivered images, in order")
    failed = FailedImage(many=True, required=False, help_text="With n > 1: the images that failed (refunded)")


def delivered_and_failed(generations: list[Generation]) -> tuple[list[Generation], list[Generation]]:
    return ([g for g in generations if g.status == Status.SUCCEEDED],
            [g for g in generations if g.status != Status.SUCCEEDED])


def balance_after_all(generations: list[Generation]) -> Decimal:
    """The balance after the request's charges and the refunds of its failed images (the charges
    were booked in one transaction, so the last one's balance is after all of them)."""
    charged = [g.balance_after for g in generations if getattr(g, "balance_after", None) is not None]
    if not charged:
        return balance_after_charge(generations[0])
    failed = [g for g in generations if g.status != Status.SUCCEEDED]
    refunded = sum((pricing.image_price(is_test=g.is_test, list_price=catalog.get_model(g.catalog_model).price_usd)
                    for g in failed), Decimal("0"))
    return min(charged) + refunded


def answer_for_all(generations: list[Generation], *, request=None) -> tuple[int, dict]:
    """The synchronous answer for a request's n images: 200 when at least one was delivered
    (the failed ones listed and refunded), else the first one's error."""
    if len(generations) == 1:
        return answer_for(generations[0], request=request)
    delivered, failed = delivered_and_failed(generations)
    if not delivered:
        return error_for(generations[0])
    context = {"request": request}
    body = GenerateOutput(delivered[0], context=context).data
    body["balance_usd"] = float(balance_after_all(generations))
    body["images"] = [{"id": str(g.id), "image_url": GenerateOutput(g, context=context).get_image_url(g), "seed": g.seed}
                      for g in delivered]
    if failed:
        body["failed"] = [{"id": str(g.id), "code": g.error_code or "GENERATION_FAILED"} for g in failed]
    return 200, body


def generation_resource(generation: Generation, *, request=None) -> dict:
    return GenerationResource(generation, context={"request": request}).data


def generation_event(generation: Generation) -> dict:
    """The webhook body."""
    return {"type": f"generation.{generation.status}", "data": generation_resource(generation)}


class Size(serializers.Serializer):
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class PricingLimits(serializers.Serializer):
    requests_per_minute_per_key = serializers.IntegerField()
    images_per_day_per_user = serializers.IntegerField()


class PricingRemaining(serializers.Serializer):
    images_today = serializers.IntegerField(allow_null=True, help_text="null while the limit store is unreachable")
    balance_usd = serializers.FloatField()
    images_affordable = serializers.IntegerField(allow_null=True, help_text="null for test keys (never charged)")


class PricingOutput(serializers.Serializer):
    """GET /api/pricing: what an image costs this caller, the limits, and what is left today."""

    currency = serializers.CharField()
    price_per_image_usd = serializers.FloatField()
    test_mode = serializers.BooleanField()
    orientations = serializers.DictField(child=Size())
    limits = PricingLimits()
    remaining = PricingRemaining()


class ModelSizes(serializers.Serializer):
    portrait = Size()
    square = Size()
    landscape = Size()


class ModelInfo(serializers.Serializer):
    id = serializers.CharField(help_text="What `model` takes")
    name = serializers.CharField()
    family = serializers.CharField(help_text="Its prompt style: quality tags and negative prompt")
    default = serializers.BooleanField(help_text="Used when `model` is left out")
    default_steps = serializers.IntegerField()
    default_cfg = serializers.FloatField()
    sizes = ModelSizes()
    price_per_image_usd = serializers.FloatField()


class ModelList(serializers.Serializer):
    """GET /api/models: the models this caller may choose."""

    models = ModelInfo(many=True)


def model_list(*, api_key) -> dict:
    is_test = api_key is not None and api_key.is_test
    backend = "preview" if is_test else settings.GENERATION_BACKEND
    default_id = catalog.default_model().id
    return ModelList({"models": [{
        "id": model.id, "name": model.name, "family": model.family, "default": model.id == default_id,
        "default_steps": model.default_steps(), "default_cfg": model.default_cfg(),
        "sizes": {name: {"width": w, "height": h} for name, (w, h) in model.sizes.items()},
        "price_per_image_usd": pricing.image_price(is_test=is_test, list_price=model.price_usd),
    } for model in catalog.all_models() if catalog.is_available(model, backend_name=backend)]}).data


def pricing_for(*, user, api_key) -> dict:
    is_test = api_key is not None and api_key.is_test
    balance = ledger.balance(user=user)
    try:
        used = limits.daily_used(user_id=user.pk, test=is_test)
    except limits.LimitsUnavailable:
        used = None
    # The default model's price: what a request that names no model is charged.
    list_price = catalog.default_model().price_usd
    return PricingOutput({
        "currency": "USD",
        "price_per_image_usd": pricing.image_price(is_test=is_test, list_price=list_price),
        "test_mode": is_test,
        "orientations": {name: {"width": w, "height": h} for name, (w, h) in ORIENTATIONS.items()},
        "limits": {
            "requests_per_minute_per_key": settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE,
            "images_per_day_per_user": settings.ANIMEAPI_DAILY_LIMIT,
        },
        "remaining": {
            "images_today": None if used is None else max(0, settings.ANIMEAPI_DAILY_LIMIT - used),
            "balance_usd": balance,
            "images_affordable": None if is_test else pricing.images_affordable(balance, price=list_price),
        },
    }).data
