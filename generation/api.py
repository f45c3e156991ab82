"""POST /api/generate, exactly as the API reference describes it, and the endpoints beyond it."""

from decimal import Decimal

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import ledger
from config.errors import ApiError, ErrorDetailsMixin, is_retryable
from config.metrics import API_RESPONSES

from . import dispatch, idempotency, images, webhooks
from .charging import GenerationParams
from .fields import (
    MAX_PROMPT_LENGTH,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    error_responses,
    json_object_with_known_fields,
)
from .models import ORIENTATIONS, Generation
from .resources import GenerateOutput, GenerationPage, GenerationResource, PricingOutput, answer_for, pricing_for
from .safety import policy
from .throttles import DailyImageQuotaThrottle, FreeEndpointThrottle, PerKeyRateThrottle

MAX_BODY_BYTES = 64 * 1024


class GenerateInput(serializers.Serializer):
    prompt = StrictCharField(max_length=MAX_PROMPT_LENGTH, trim_whitespace=True)
    orientation = serializers.ChoiceField(choices=list(ORIENTATIONS), default="portrait")
    allowNSFW = StrictBooleanField(default=True)  # noqa: N815 (the reference's field name)
    enhance = StrictBooleanField(default=True)
    # Beyond the reference: answer 202 at once (also `Prefer: respond-async`), optionally calling
    # webhook_url when the image is done.
    async_ = StrictBooleanField(default=False, source="is_async", required=False)
    webhook_url = StrictCharField(max_length=2000, required=False, default="")
    seed = StrictIntegerField(min_value=0, max_value=2**32 - 1, required=False, default=None, allow_null=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["async"] = fields.pop("async_")  # `async` is a Python keyword
        return fields


FIELD_CODES = {"prompt": "INVALID_PROMPT", "orientation": "INVALID_ORIENTATION",
               "allowNSFW": "INVALID_ALLOW_NSFW", "enhance": "INVALID_ENHANCE", "async": "INVALID_ASYNC",
               "webhook_url": "INVALID_WEBHOOK_URL", "seed": "INVALID_SEED"}
FIELD_MESSAGES = {
    "prompt": f"prompt must be a string of 1 to {MAX_PROMPT_LENGTH} characters",
    "orientation": "orientation must be one of: portrait, square, landscape",
    "allowNSFW": "allowNSFW must be a boolean (true or false)",
    "enhance": "enhance must be a boolean (true or false)",
    "async": "async must be a boolean (true or false)",
    "webhook_url": "webhook_url must be an https URL of at most 2000 characters",
    "seed": "seed must be an integer from 0 to 4294967295",
}


def parse_generate_request(request) -> GenerationParams:
    """Validate the body; any problem is a 400 naming the field, before anything is charged."""
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
        raise ApiError(status_code=413, code="REQUEST_TOO_LARGE", message="Request body is larger than 64 KiB")
    data = json_object_with_known_fields(request.data, GenerateInput)
    serializer = GenerateInput(data=data)
    if not serializer.is_valid():
        field = next(name for name in FIELD_CODES if name in serializer.errors)
        message = FIELD_MESSAGES[field]
        if field == "prompt" and "prompt" not in data:
            message = "prompt is required"
        raise ApiError(status_code=400, code=FIELD_CODES[field], message=message)
    values = serializer.validated_data
    # Whatever the flags: refused before anything is charged (the daily unit goes back, as for any 400).
    policy.enforce_and_record(values["prompt"], user=request.user, api_key=request.auth, endpoint=request.path)
    is_async = values["is_async"] or "respond-async" in request.headers.get("Prefer", "")
    if values["webhook_url"]:
        if not is_async:
            raise ApiError(status_code=400, code="INVALID_WEBHOOK_URL",
                           message="webhook_url needs an async request (\"async\": true or Prefer: respond-async)")
        try:
            webhooks.check_url(values["webhook_url"])
        except webhooks.UnsafeWebhookUrl as exc:
            raise ApiError(status_code=400, code="INVALID_WEBHOOK_URL", message=str(exc)) from None
    return GenerationParams(
        prompt=values["prompt"], orientation=values["orientation"],
        allow_nsfw=values["allowNSFW"], enhance=values["enhance"],
        is_async=is_async, webhook_url=values["webhook_url"], seed=values["seed"],
    )


class GenerateView(ErrorDetailsMixin, APIView):
    throttle_classes = [PerKeyRateThrottle, DailyImageQuotaThrottle]
    metrics_endpoint = "generate"

    @extend_schema(
        operation_id="generate",
        summary="Generate an anime image from a text prompt",
        request=GenerateInput,
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                             description="Retries with the same key and body return the first answer (1-255 characters)"),
            # No enum: preferences a server does not know are ignored (RFC 7240).
            OpenApiParameter("Prefer", str, OpenApiParameter.HEADER, required=False,
                             description="respond-async: answer 202 at once, like \"async\": true"),
        ],
        responses={
            200: GenerateOutput,
            202: OpenApiResponse(inline_serializer("GenerationAccepted", {
                "id": serializers.UUIDField(), "status": serializers.CharField(), "status_url": serializers.URLField(),
            }), description="Accepted for async generation: poll status_url or wait for webhook_url"),
            **error_responses({
                400: "Invalid request, or CONTENT_POLICY_VIOLATION",
                402: "Insufficient balance",
                409: "Same Idempotency-Key still in progress",
                413: "Body over 64 KiB",
                422: "NSFW image withheld, or Idempotency-Key reused",
                429: "Rate limit exceeded or daily limit reached",
                500: "Image generation failed (refunded)",
            }),
        },
        examples=[OpenApiExample("minimal", value={"prompt": "anime girl with blue hair"}, request_only=True)],
    )
    def post(self, request):
        params = parse_generate_request(request)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            # Test and live keys of one user never share answers.
            mode = "test" if request.auth is not None and request.auth.is_test else "live"
            key = f"{mode}:{idempotency.validate_key(key)}"
            stored = idempotency.begin(user=request.user, key=key,
                                       fingerprint=idempotency.request_fingerprint(request.data))
            if stored is not None:
                return Response(stored.body, status=stored.status_code, headers={"Idempotent-Replayed": "true"})
        daily_unit = getattr(request, "daily_unit", None)
        try:
            if params.is_async:
                status, body = self._submit(request, params, daily_unit)
            else:
                generation = dispatch.generate_and_wait(
                    user=request.user, api_key=request.auth, params=params, daily_unit=daily_unit,
                    request_id=request.request_id,
                )
                status, body = answer_for(generation, request=request)
        except BaseException:
            if key is not None:
                idempotency.abandon(user=request.user, key=key)
            raise
        if key is not None:
            if status >= 400 and is_retryable(body.get("code", "")):
                # An answer that says "retry" must not be replayed to the retry: it runs afresh
                # (a failed generation was refunded, so it is charged once in the end).
                idempotency.abandon(user=request.user, key=key)
            else:
                idempotency.finish(user=request.user, key=key, status_code=status, body=body)
        headers = {"Location": body["status_url"]} if status == 202 else None
        return Response(body, status=status, headers=headers)

    def _submit(self, request, params, daily_unit):
        generation = dispatch.submit_generation(
            user=request.user, api_key=request.auth, params=params, daily_unit=daily_unit,
            request_id=request.request_id, base_url=request.build_absolute_uri("/"),
        )
        if generation.status == Generation.Status.FAILED:
            return answer_for(generation, request=request)
        status_url = request.build_absolute_uri(f"/api/generations/{generation.id}")
        return 202, {"id": str(generation.id), "status": generation.status, "status_url": status_url}

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        daily_unit = getattr(request, "daily_unit", None)
        if daily_unit is not None:
            # A no-op when a generation adopted the unit: the pipeline gives that one back if it fails.
            daily_unit.release()
        code = response.data.get("code", "") if isinstance(response.data, dict) and response.status_code >= 400 else ""
        API_RESPONSES.labels(self.metrics_endpoint, str(response.status_code), code).inc()
        state = getattr(request, "rate_limit_state", None)
        if state is not None:
            for name, value in state.headers().items():
                response.setdefault(name, value)
        self._account_headers(request, response)
        return response

    def _account_headers(self, request, response):
        """X-Balance-USD and X-Daily-Remaining, for callers who keep an eye on both. Not on 5xx
        answers: the database may be what failed, and the answer must still go out."""
        if response.status_code >= 500 or not request.user or not request.user.is_authenticated:
            return
        body = response.data if isinstance(response.data, dict) else {}
        balance = body.get("balance_usd")
        if balance is None:
            balance = ledger.balance(user=request.user)
        response["X-Balance-USD"] = f"{Decimal(str(balance)):.6f}"
        state = getattr(request, "daily_quota_state", None)
        if state is not None:
            # The unit this request took is back unless it became an image (or a queued job).
            unit = getattr(request, "daily_unit", None)
            returned = unit is not None and (unit.released or response.status_code not in (200, 202))
            response["X-Daily-Remaining"] = str(max(0, state.remaining + (1 if returned else 0)))


class GenerationPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100


class GenerationListView(ErrorDetailsMixin, APIView):
    """GET /api/generations: the caller's own generations, newest first (cursor-paginated)."""

    throttle_classes = [FreeEndpointThrottle]

    @extend_schema(operation_id="list_generations", responses={
        200: GenerationPage, **error_responses({404: "Invalid cursor"})})
    def get(self, request):
        paginator = GenerationPagination()
        page = paginator.paginate_queryset(Generation.objects.filter(user=request.user), request, view=self)
        return paginator.get_paginated_response(
            GenerationResource(page, many=True, context={"request": request}).data)


class GenerationDetailView(ErrorDetailsMixin, APIView):
    """GET /api/generations/{id}: the status of one of the caller's generations.
    DELETE: remove its image from storage; the record and its charge stay."""

    throttle_classes = [FreeEndpointThrottle]

    def _own(self, request, generation_id) -> Generation:
        # Another user's id is indistinguishable from a missing one.
        generation = Generation.objects.filter(user=request.user, pk=generation_id).first()
        if generation is None:
            raise ApiError(status_code=404, code="NOT_FOUND", message="No such generation")
        return generation

    @extend_schema(operation_id="get_generation", responses={
        200: GenerationResource, **error_responses({404: "Not yours or no such id"})})
    def get(self, request, generation_id):
        return Response(GenerationResource(self._own(request, generation_id), context={"request": request}).data)

    @extend_schema(operation_id="delete_generation_image", responses={
        200: OpenApiResponse(GenerationResource, description="The generation, image_url now null"),
        **error_responses({404: "Not yours or no such id",
                           409: "Still pending or running: delete it once it has finished"})})
    def delete(self, request, generation_id):
        try:
            generation = images.delete_generation_image(generation=self._own(request, generation_id))
        except images.GenerationStillRunning:
            raise ApiError(status_code=409, code="GENERATION_IN_PROGRESS",
                           message="This generation has not finished yet; nothing was deleted. "
                                   "Delete it once its status is succeeded or failed.",
                           headers={"Retry-After": "2"}) from None
        return Response(GenerationResource(generation, context={"request": request}).data)


class PricingView(ErrorDetailsMixin, APIView):
    """GET /api/pricing: the price, the limits, and what the caller has left today."""

    throttle_classes = [FreeEndpointThrottle]

    @extend_schema(operation_id="pricing", responses={
        200: PricingOutput, **error_responses({})})
    def get(self, request):
        return Response(pricing_for(user=request.user, api_key=request.auth))
