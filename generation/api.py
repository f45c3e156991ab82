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

from . import catalog, dispatch, idempotency, images, limits, quota, webhooks
from .charging import GenerationParams, backend_for
from .fields import (
    MAX_PROMPT_LENGTH,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    error_responses,
    validated_body,
)
from .models import ORIENTATIONS, Generation
from .resources import (
    GenerateBatchOutput,
    GenerationPage,
    GenerationResource,
    ModelList,
    PricingOutput,
    answer_for,
    answer_for_all,
    model_list,
    pricing_for,
)
from .safety import policy
from .throttles import (
    DailyImageQuotaThrottle,
    FreeEndpointThrottle,
    PerKeyRateThrottle,
    daily_limit_refusal,
    service_unavailable,
)

MAX_BODY_BYTES = 64 * 1024
MAX_IMAGES = 4  # n: images per request
MAX_NEGATIVE_PROMPT_LENGTH = 1000


_ACCEPTED_FIELDS = {"id": serializers.UUIDField(), "status": serializers.CharField(),
                    "status_url": serializers.URLField()}
GenerationAccepted = inline_serializer("GenerationAccepted", {
    **_ACCEPTED_FIELDS,
    "images": inline_serializer("AcceptedImage", _ACCEPTED_FIELDS, many=True, required=False,
                                help_text="With n > 1: every image's job, in order"),
})


class GenerateInput(serializers.Serializer):
    prompt = StrictCharField(max_length=MAX_PROMPT_LENGTH, trim_whitespace=True)
    orientation = serializers.ChoiceField(choices=list(ORIENTATIONS), default="portrait")
    allowNSFW = StrictBooleanField(default=True)  # noqa: N815 (the reference's field name)
    enhance = StrictBooleanField(default=True)
    # Beyond the reference: answer 202 at once (also `Prefer: respond-async`), optionally calling
    # webhook_url when the image is done.
    async_ = StrictBooleanField(default=False, source="is_async", required=False)
    webhook_url = StrictCharField(max_length=2000, required=False, default="")
    seed = StrictIntegerField(min_value=0, max_value=2**32 - 1, required=False, default=None, allow_null=True,
                              help_text="With n > 1, image k gets seed + k")
    n = StrictIntegerField(min_value=1, max_value=MAX_IMAGES, default=1, help_text="Images, each charged on its own")
    negative_prompt = StrictCharField(max_length=MAX_NEGATIVE_PROMPT_LENGTH, required=False, default="",
                                      allow_blank=True, trim_whitespace=True,
                                      help_text="Added to the model family's negative prompt")
    model = StrictCharField(max_length=64, required=False, default="", allow_blank=True,
                            help_text="A model id from GET /api/models; empty: the default")

    def get_fields(self):
        fields = super().get_fields()
        fields["async"] = fields.pop("async_")  # `async` is a Python keyword
        return fields


FIELD_CODES = {"prompt": "INVALID_PROMPT", "orientation": "INVALID_ORIENTATION",
               "allowNSFW": "INVALID_ALLOW_NSFW", "enhance": "INVALID_ENHANCE", "async": "INVALID_ASYNC",
               "webhook_url": "INVALID_WEBHOOK_URL", "seed": "INVALID_SEED", "n": "INVALID_N",
               "negative_prompt": "INVALID_NEGATIVE_PROMPT", "model": "INVALID_MODEL"}
FIELD_MESSAGES = {
    "prompt": f"prompt must be a string of 1 to {MAX_PROMPT_LENGTH} characters",
    "orientation": "orientation must be one of: portrait, square, landscape",
    "allowNSFW": "allowNSFW must be a boolean (true or false)",
    "enhance": "enhance must be a boolean (true or false)",
    "async": "async must be a boolean (true or false)",
    "webhook_url": "webhook_url must be an https URL of at most 2000 characters",
    "seed": "seed must be an integer from 0 to 4294967295",
    "n": f"n must be an integer from 1 to {MAX_IMAGES}",
    "negative_prompt": f"negative_prompt must be a string of at most {MAX_NEGATIVE_PROMPT_LENGTH} characters",
    "model": "model must be a model id from GET /api/models",
}


def checked_model(model_id: str, *, api_key) -> str:
    """The model id if this deployment can render it for this key, else 400 INVALID_MODEL."""
    try:
        model = catalog.get_model(model_id)
    except catalog.UnknownModel:
        raise ApiError(status_code=400, code="INVALID_MODEL",
                       message=f"Unknown model: {model_id[:64]} (GET /api/models lists them)") from None
    if not catalog.is_available(model, backend_name=backend_for(api_key)):
        raise ApiError(status_code=400, code="INVALID_MODEL", message=f"Model {model.id} is not available now")
    return model.id


def hold_daily_units(request, n: int) -> None:
    """The throttle took one unit of the daily quota; a request for n images holds n (429
    DAILY_LIMIT_EXCEEDED when fewer are left; the one taken goes back with the answer)."""
    unit = getattr(request, "daily_unit", None)
    if unit is None or n <= 1:
        return
    try:
        unit.take_more(n - 1)
    except quota.DailyLimitReached as exc:
        request.daily_quota_state = exc.state
        raise daily_limit_refusal(exc.state) from None
    except limits.LimitsUnavailable:
        raise service_unavailable() from None
    request.daily_quota_state = unit.state


def parse_generate_request(request) -> GenerationParams:
    """Validate the body; any problem is a 400 naming the field, before anything is charged.
    A valid request for n images then holds n daily units."""
    _, values = validated_body(request, GenerateInput, codes=FIELD_CODES, messages=FIELD_MESSAGES,
                               max_bytes=MAX_BODY_BYTES)
    # Whatever the flags: refused before anything is charged (the daily unit goes back, as for any 400).
    verdict = policy.enforce_and_record(values["prompt"], user=request.user, api_key=request.auth,
                                        endpoint=request.path)
    is_async = values["is_async"] or "respond-async" in request.headers.get("Prefer", "")
    if values["webhook_url"]:
        if not is_async:
            raise ApiError(status_code=400, code="INVALID_WEBHOOK_URL",
                           message="webhook_url needs an async request (\"async\": true or Prefer: respond-async)")
        try:
            webhooks.check_url(values["webhook_url"])
        except webhooks.UnsafeWebhookUrl as exc:
            raise ApiError(status_code=400, code="INVALID_WEBHOOK_URL", message=str(exc)) from None
    model = checked_model(values["model"], api_key=request.auth)
    hold_daily_units(request, values["n"])
    return GenerationParams(
        prompt=values["prompt"], orientation=values["orientation"],
        allow_nsfw=policy.allow_nsfw_for(verdict, values["allowNSFW"]), enhance=values["enhance"],
        is_async=is_async, webhook_url=values["webhook_url"], seed=values["seed"],
        negative_prompt=values["negative_prompt"], model=model, n=values["n"],
    )


def request_daily_unit(request) -> quota.DailyUnit | None:
    return getattr(request, "daily_unit", None)


def answer_once(request, run, *, scope: str = "") -> tuple[int, dict, bool]:
    """`run()`'s (status, body), with Idempotency-Key's guarantee: the same key and body within
    24 hours gets the first answer again (replayed: True) and is charged once. `scope` keeps the
    answers of another surface (the OpenAI-compatible one) apart."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        status, body = run()
        return status, body, False
    # Test and live keys of one user never share answers.
    mode = "test" if request.auth is not None and request.auth.is_test else "live"
    key = ":".join(part for part in (mode, scope, idempotency.validate_key(key)) if part)
    stored = idempotency.begin(user=request.user, key=key, fingerprint=idempotency.request_fingerprint(request.data))
    if stored is not None:
        return stored.status_code, stored.body, True
    try:
        status, body = run()
    except BaseException:
        idempotency.abandon(user=request.user, key=key)
        raise
    if status >= 400 and is_retryable(error_code_of(body)):
        # An answer that says "retry" must not be replayed to the retry: it runs afresh
        # (a failed generation was refunded, so it is charged once in the end).
        idempotency.abandon(user=request.user, key=key)
    else:
        idempotency.finish(user=request.user, key=key, status_code=status, body=body)
    return status, body, False


def error_code_of(body: dict) -> str:
    """The code of an error body, ours ({"code"}) or OpenAI's ({"error": {"code"}})."""
    error = body.get("error")
    return error.get("code") or "" if isinstance(error, dict) else body.get("code", "")


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
            200: GenerateBatchOutput,
            202: OpenApiResponse(GenerationAccepted,
                                 description="Accepted for async generation: poll status_url or wait for webhook_url"),
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

        def run():
            if params.is_async:
                return self._submit(request, params)
            generations = dispatch.generate_and_wait_all(
                user=request.user, api_key=request.auth, params=params, daily_unit=request_daily_unit(request),
                request_id=request.request_id,
            )
            return answer_for_all(generations, request=request)

        status, body, replayed = answer_once(request, run)
        headers = {"Location": body["status_url"]} if status == 202 else {}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status=status, headers=headers or None)

    def _submit(self, request, params):
        generations = dispatch.submit_generations(
            user=request.user, api_key=request.auth, params=params, daily_unit=request_daily_unit(request),
            request_id=request.request_id, base_url=request.build_absolute_uri("/"),
        )
        if generations[0].status == Generation.Status.FAILED:
            return answer_for(generations[0], request=request)
        accepted = [{"id": str(generation.id), "status": generation.status,
                     "status_url": request.build_absolute_uri(f"/api/generations/{generation.id}")}
                    for generation in generations]
        body = dict(accepted[0])
        if len(accepted) > 1:
            body["images"] = accepted
        return 202, body

    def handle_exception(self, exc):
        # An exception DRF does not turn into an answer is re-raised past finalize_response
        # (Django's 500 answers it): the units the request still holds go back here.
        daily_unit = getattr(self.request, "daily_unit", None)
        if daily_unit is not None:
            daily_unit.release()
        return super().handle_exception(exc)

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
            # The units this request took are back unless they became images (or queued jobs);
            # an image of n that failed gave its unit back too.
            unit = getattr(request, "daily_unit", None)
            given_back = (unit.count if unit.released or response.status_code not in (200, 202) else 0) if unit else 0
            response["X-Daily-Remaining"] = str(max(0, state.remaining + given_back))


class ModelListView(ErrorDetailsMixin, APIView):
    """GET /api/models: the models `model` may name, with their defaults and price."""

    throttle_classes = [FreeEndpointThrottle]

    @extend_schema(operation_id="list_models", responses={200: ModelList, **error_responses({})})
    def get(self, request):
        return Response(model_list(api_key=request.auth))


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
