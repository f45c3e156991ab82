"""POST /api/generate, exactly as the API reference describes it."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import ApiError, error_body

from . import idempotency, limits, pipeline
from .models import ORIENTATIONS, Generation
from .throttles import DailyImageQuotaThrottle, PerKeyRateThrottle

MAX_PROMPT_LENGTH = 1000
MAX_BODY_BYTES = 64 * 1024


class StrictBooleanField(serializers.BooleanField):
    """JSON true/false only: "false" or 0 are type errors, not quiet truths."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class StrictCharField(serializers.CharField):
    """A JSON string only: numbers and lists are type errors, not silently stringified."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class GenerateInput(serializers.Serializer):
    prompt = StrictCharField(max_length=MAX_PROMPT_LENGTH, trim_whitespace=True)
    orientation = serializers.ChoiceField(choices=list(ORIENTATIONS), default="portrait")
    allowNSFW = StrictBooleanField(default=True)  # noqa: N815 (the reference's field name)
    enhance = StrictBooleanField(default=True)


class GenerateOutput(serializers.Serializer):
    image_url = serializers.URLField()
    enhanced_prompt = serializers.CharField()
    balance_usd = serializers.FloatField()
    generation_time_ms = serializers.IntegerField()


ErrorOutput = inline_serializer("Error", {"error": serializers.CharField(), "code": serializers.CharField()})

FIELD_CODES = {"prompt": "INVALID_PROMPT", "orientation": "INVALID_ORIENTATION",
               "allowNSFW": "INVALID_ALLOW_NSFW", "enhance": "INVALID_ENHANCE"}
FIELD_MESSAGES = {
    "prompt": f"prompt must be a string of 1 to {MAX_PROMPT_LENGTH} characters",
    "orientation": "orientation must be one of: portrait, square, landscape",
    "allowNSFW": "allowNSFW must be a boolean (true or false)",
    "enhance": "enhance must be a boolean (true or false)",
}


def parse_generate_request(request) -> pipeline.GenerationParams:
    """Validate the body; any problem is a 400 naming the field, before anything is charged."""
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
        raise ApiError(status_code=413, code="REQUEST_TOO_LARGE", message="Request body is larger than 64 KiB")
    data = request.data
    if not isinstance(data, dict):
        raise ApiError(status_code=400, code="INVALID_REQUEST", message="Request body must be a JSON object")
    unknown = sorted(set(data) - set(GenerateInput().fields))
    if unknown:
        # Refused, not ignored: a misspelt "allowNsfw": false must not quietly allow NSFW.
        raise ApiError(status_code=400, code="UNKNOWN_FIELD", message=f"Unknown field: {unknown[0]}")
    serializer = GenerateInput(data=data)
    if not serializer.is_valid():
        field = next(name for name in FIELD_CODES if name in serializer.errors)
        message = FIELD_MESSAGES[field]
        if field == "prompt" and "prompt" not in data:
            message = "prompt is required"
        raise ApiError(status_code=400, code=FIELD_CODES[field], message=message)
    values = serializer.validated_data
    return pipeline.GenerationParams(
        prompt=values["prompt"], orientation=values["orientation"],
        allow_nsfw=values["allowNSFW"], enhance=values["enhance"],
    )


def answer_for(generation: Generation, *, request) -> tuple[int, dict]:
    if generation.status == Generation.Status.SUCCEEDED:
        return 200, {
            "image_url": pipeline.images.image_url(generation.image, request=request),
            "enhanced_prompt": generation.enhanced_prompt,
            # A JSON number, as the reference says; the ledger itself stays Decimal.
            "balance_usd": float(generation.balance_after),
            "generation_time_ms": generation.total_ms,
        }
    if generation.error_code == "INSUFFICIENT_BALANCE":
        return 402, error_body("Insufficient balance", "INSUFFICIENT_BALANCE")
    if generation.error_code == "NSFW_CONTENT_BLOCKED":
        return 422, error_body("The image was flagged as NSFW and withheld; you were not charged",
                               "NSFW_CONTENT_BLOCKED")
    return 500, error_body("Generation failed", "GENERATION_FAILED")


class GenerateView(APIView):
    throttle_classes = [PerKeyRateThrottle, DailyImageQuotaThrottle]

    @extend_schema(
        operation_id="generate",
        summary="Generate an anime image from a text prompt",
        request=GenerateInput,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="Retries with the same key and body return the first answer")],
        responses={
            200: GenerateOutput,
            400: OpenApiResponse(ErrorOutput, description="Invalid request"),
            401: OpenApiResponse(ErrorOutput, description="Invalid or missing API key"),
            402: OpenApiResponse(ErrorOutput, description="Insufficient balance"),
            409: OpenApiResponse(ErrorOutput, description="Same Idempotency-Key still in progress"),
            413: OpenApiResponse(ErrorOutput, description="Body over 64 KiB"),
            422: OpenApiResponse(ErrorOutput, description="NSFW image withheld, or Idempotency-Key reused"),
            429: OpenApiResponse(ErrorOutput, description="Rate limit exceeded or daily limit reached"),
            500: OpenApiResponse(ErrorOutput, description="Image generation failed (refunded)"),
            503: OpenApiResponse(ErrorOutput, description="Temporarily unavailable"),
        },
        examples=[OpenApiExample("minimal", value={"prompt": "anime girl with blue hair"}, request_only=True)],
    )
    def post(self, request):
        params = parse_generate_request(request)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = idempotency.validate_key(key)
            stored = idempotency.begin(user=request.user, key=key,
                                       fingerprint=idempotency.request_fingerprint(request.data))
            if stored is not None:
                return Response(stored.body, status=stored.status_code, headers={"Idempotent-Replayed": "true"})
        try:
            generation = pipeline.generate_and_wait(
                user=request.user, api_key=request.auth, params=params, request_id=request.request_id
            )
        except BaseException:
            if key is not None:
                idempotency.abandon(user=request.user, key=key)
            raise
        status, body = answer_for(generation, request=request)
        request.image_delivered = status == 200
        if key is not None:
            idempotency.finish(user=request.user, key=key, status_code=status, body=body)
        return Response(body, status=status)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        day = getattr(request, "daily_quota_day", None)
        if day and not getattr(request, "image_delivered", False):
            try:
                limits.give_back_daily_quota(user_id=request.user.pk, day=day)
            except limits.LimitsUnavailable:
                pass  # the unit expires with the day; refusing an answer over it would be worse
        state = getattr(request, "rate_limit_state", None)
        if state is not None:
            for name, value in state.headers().items():
                response.setdefault(name, value)
        return response
