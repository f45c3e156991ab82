"""The OpenAI-compatible surface: POST /v1/images/generations and GET /v1/models.

With it the `openai` SDKs, LiteLLM, Open WebUI and LibreChat work against AnimeAPI with a base
URL and an `ank_` key. It is a second door to the same pipeline: the same key authentication,
rate limit, daily quota, content policy, prices, ledger, idempotency and history as
POST /api/generate; only the request's and the answer's shapes are OpenAI's.

- `model`: one of our ids (GET /v1/models); any other name (dall-e-2, dall-e-3, gpt-image-1...)
  means the default model, since clients send their own defaults.
- `size`: any WxH (or `auto`), snapped by aspect ratio to portrait, square or landscape.
- `response_format`: url or b64_json; when absent, OpenAI's rule (base64 for gpt-image* models or
  when a gpt-image-only field is present, else a URL).
- Errors in OpenAI's envelope {"error": {"message", "type", "param", "code"}} with our codes in
  `code`. The SDKs retry 408/409/429/5xx and send no idempotency key, so every answer that must
  not be retried says `x-should-retry: false`.
"""

import base64
import logging
import re

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import ApiError, ErrorDetailsMixin

from . import catalog, dispatch, images
from .api import (
    MAX_BODY_BYTES,
    MAX_IMAGES,
    MAX_NEGATIVE_PROMPT_LENGTH,
    GenerateView,
    answer_once,
    checked_model,
    hold_daily_units,
    request_daily_unit,
)
from .charging import GenerationParams
from .fields import MAX_PROMPT_LENGTH, StrictBooleanField, StrictCharField, StrictIntegerField, validated_body
from .models import Generation
from .resources import balance_after_all, delivered_and_failed, error_for
from .safety import policy
from .throttles import FreeEndpointThrottle

log = logging.getLogger(__name__)

SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# Boundaries between the three sizes: the geometric means of their aspect ratios, so each WxH
# goes to the size whose shape is nearest (832x1280 is 0.65, 1280x832 is 1.54).
PORTRAIT_BELOW = (0.65 * 1.0) ** 0.5
LANDSCAPE_ABOVE = 1 / PORTRAIT_BELOW
# OpenAI fields that only gpt-image models take; their presence means base64 by default.
GPT_IMAGE_FIELDS = ("output_format", "background", "output_compression", "moderation")
# OpenAI fields accepted and ignored: our images are WEBPs of one quality and style.
IGNORED_FIELDS = ("quality", "style", "partial_images", "stream", *GPT_IMAGE_FIELDS)
FIELD_CODES = {"prompt": "INVALID_PROMPT", "model": "INVALID_MODEL", "n": "INVALID_N", "size": "INVALID_SIZE",
               "response_format": "INVALID_RESPONSE_FORMAT", "negative_prompt": "INVALID_NEGATIVE_PROMPT",
               "user": "INVALID_USER", "enhance": "INVALID_ENHANCE", "allowNSFW": "INVALID_ALLOW_NSFW",
               "seed": "INVALID_SEED"}
FIELD_MESSAGES = {
    "prompt": f"prompt must be a string of 1 to {MAX_PROMPT_LENGTH} characters",
    "model": "model must be a string",
    "n": f"n must be an integer from 1 to {MAX_IMAGES}",
    "size": "size must be WIDTHxHEIGHT (e.g. 1024x1024) or auto",
    "response_format": "response_format must be url or b64_json",
    "negative_prompt": f"negative_prompt must be a string of at most {MAX_NEGATIVE_PROMPT_LENGTH} characters",
    "user": "user must be a string of at most 256 characters",
    "enhance": "enhance must be a boolean (true or false)",
    "allowNSFW": "allowNSFW must be a boolean (true or false)",
    "seed": "seed must be an integer from 0 to 4294967295",
}
# OpenAI's error `type` for each status; the code says more.
ERROR_TYPES = {401: "invalid_api_key", 402: "insufficient_quota", 403: "permission_error", 429: "rate_limit_exceeded"}
# Statuses whose answer must never be retried as it is: a retry would fail the same way (or, for a
# charged answer, charge again).
NOT_RETRYABLE = {400, 401, 402, 403, 404, 405, 413, 422}


class ImagesGenerationsInput(serializers.Serializer):
    prompt = StrictCharField(max_length=MAX_PROMPT_LENGTH, trim_whitespace=True)
    model = StrictCharField(required=False, allow_blank=True, allow_null=True, default="", max_length=200,
                            help_text="A model id from GET /v1/models; other names mean the default model")
    n = StrictIntegerField(min_value=1, max_value=MAX_IMAGES, required=False, allow_null=True, default=1)
    size = StrictCharField(required=False, allow_null=True, default="", max_length=20,
                           help_text="WIDTHxHEIGHT or auto, snapped by aspect ratio to 832x1280, 1024x1024 or 1280x832")
    response_format = serializers.ChoiceField(choices=["url", "b64_json"], required=False, allow_null=True,
                                              default=None)
    negative_prompt = StrictCharField(max_length=MAX_NEGATIVE_PROMPT_LENGTH, required=False, default="",
                                      allow_blank=True, trim_whitespace=True, help_text="Send it in extra_body")
    user = StrictCharField(max_length=256, required=False, allow_blank=True, allow_null=True, default="")
    enhance = StrictBooleanField(default=True)
    allowNSFW = StrictBooleanField(default=True)  # noqa: N815 (the native API's name)
    seed = StrictIntegerField(min_value=0, max_value=2**32 - 1, required=False, default=None, allow_null=True)
    quality = serializers.JSONField(required=False, help_text="Accepted and ignored")
    style = serializers.JSONField(required=False, help_text="Accepted and ignored")
    partial_images = serializers.JSONField(required=False, help_text="Accepted and ignored")
    stream = serializers.JSONField(required=False, help_text="Accepted and ignored (never streamed)")
    output_format = serializers.JSONField(required=False, help_text="Accepted and ignored: images are WEBP")
    background = serializers.JSONField(required=False, help_text="Accepted and ignored")
    output_compression = serializers.JSONField(required=False, help_text="Accepted and ignored")
    moderation = serializers.JSONField(required=False, help_text="Accepted and ignored")


def orientation_for_size(size: str | None) -> str:
    """`size` snapped by aspect ratio: 512x512 -> square, 1024x1536 -> portrait, 1792x1024 ->
    landscape; absent or `auto` -> square (OpenAI's default is 1024x1024). ValueError if invalid."""
    if not size or size == "auto":
        return "square"
    match = SIZE.match(size)
    if not match or not int(match[1]) or not int(match[2]):
        raise ValueError(size)
    ratio = int(match[1]) / int(match[2])
    if ratio < PORTRAIT_BELOW:
        return "portrait"
    return "landscape" if ratio > LANDSCAPE_ABOVE else "square"


def model_id_for(name: str | None) -> str:
    """Our id for an OpenAI `model`: ours as is; anything else (dall-e-3, gpt-image-1) the default."""
    try:
        return catalog.get_model(name).id
    except catalog.UnknownModel:
        return catalog.default_model().id


def wants_base64(values: dict, raw: dict) -> bool:
    if values["response_format"]:
        return values["response_format"] == "b64_json"
    model = values["model"] or ""
    return model.startswith("gpt-image") or any(raw.get(name) is not None for name in GPT_IMAGE_FIELDS)


def parse_images_request(request) -> tuple[GenerationParams, bool]:
    """The body as GenerationParams and whether to answer base64; a 400 naming the field otherwise."""
    data, values = validated_body(request, ImagesGenerationsInput, codes=FIELD_CODES, messages=FIELD_MESSAGES,
                                  max_bytes=MAX_BODY_BYTES)
    try:
        orientation = orientation_for_size(values["size"])
    except ValueError:
        raise ApiError(status_code=400, code="INVALID_SIZE", message=FIELD_MESSAGES["size"]) from None
    verdict = policy.enforce_and_record(values["prompt"], user=request.user, api_key=request.auth,
                                        endpoint=request.path)
    model = checked_model(model_id_for(values["model"]), api_key=request.auth)
    n = values["n"] or 1
    hold_daily_units(request, n)
    params = GenerationParams(
        prompt=values["prompt"], orientation=orientation, allow_nsfw=policy.allow_nsfw_for(verdict, values["allowNSFW"]),
        enhance=values["enhance"],
        seed=values["seed"], negative_prompt=values["negative_prompt"], model=model, n=n,
        end_user=values["user"] or "",
    )
    return params, wants_base64(values, data)


# --- answers ------------------------------------------------------------------------------------

def image_file_url(generation: Generation, *, request) -> str:
    """A URL for the image that loads whatever the client sends along. Open WebUI fetches it with
    its Authorization header; S3 refuses a presigned URL that comes with a second credential, so
    with presigned URLs (IMAGE_URL_TTL_S > 0) the answer points at our own signed link instead
    (ImageFileView), which ignores the header and expires like a presigned URL."""
    if settings.IMAGE_URL_TTL_S <= 0:
        return images.image_url(generation.image, request=request, base_url=generation.base_url)
    token = signing.dumps(str(generation.id), salt=IMAGE_FILE_SALT)
    return request.build_absolute_uri(f"/v1/images/files/{token}")


IMAGE_FILE_SALT = "animeapi.v1.image-file"


def _datum(generation: Generation, *, request, as_base64: bool) -> dict:
    datum = {"revised_prompt": generation.enhanced_prompt}
    encoded = _stored_as_base64(generation) if as_base64 else None
    if encoded is not None:
        datum["b64_json"] = encoded
    else:
        datum["url"] = image_file_url(generation, request=request)
    # Ours, beside OpenAI's: the SDKs keep unknown fields and ignore them.
    datum.update(id=str(generation.id), seed=generation.seed, width=generation.width, height=generation.height)
    return datum


def _stored_as_base64(generation: Generation) -> str | None:
    """The stored image in base64, or None when storage cannot be read just now. The image is
    charged and delivered by then: answering 500 would make the SDKs retry (twice, with no
    idempotency key) and charge again, so the caller gets the URL instead."""
    try:
        with default_storage.open(generation.image, "rb") as stored:
            return base64.b64encode(stored.read()).decode()
    except Exception:  # noqa: BLE001 (S3 or disk: any read failure has the same answer)
        log.exception("could not read image %s back for b64_json; answering its URL", generation.pk)
        return None


def images_answer(generations: list[Generation], *, request, as_base64: bool) -> tuple[int, dict]:
    """OpenAI's ImagesResponse for the delivered images (failed ones were refunded), or the first
    image's error when none was delivered."""
    delivered, failed = delivered_and_failed(generations)
    if not delivered:
        return error_for(generations[0])
    return 200, {
        "created": int(generations[0].created_at.timestamp()),
        "data": [_datum(generation, request=request, as_base64=as_base64) for generation in delivered],
        "output_format": "webp",
        "model": delivered[0].catalog_model,
        "cost_usd": float(sum(generation.cost_usd for generation in delivered)),
        "balance_usd": float(balance_after_all(generations)),
        "failed": [{"id": str(generation.id), "code": generation.error_code or "GENERATION_FAILED"}
                   for generation in failed],
    }


def openai_error(status: int, body: dict) -> dict:
    """Our error body {"error", "code", ...} in OpenAI's envelope, our code in `code`."""
    code = body.get("code", "")
    param = None
    if code == "UNKNOWN_FIELD":
        param = body.get("error", "").rpartition(": ")[2] or None
    else:
        param = next((name for name, field_code in FIELD_CODES.items() if field_code == code), None)
    error_type = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    extras = {name: body[name] for name in ("request_id", "retryable", "doc_url") if name in body}
    return {"error": {"message": body.get("error", ""), "type": error_type, "param": param, "code": code, **extras}}


# --- views --------------------------------------------------------------------------------------

OpenAIErrorOutput = inline_serializer("OpenAIError", {
    "error": inline_serializer("OpenAIErrorDetail", {
        "message": serializers.CharField(), "type": serializers.CharField(),
        "param": serializers.CharField(allow_null=True), "code": serializers.CharField(),
        "request_id": serializers.CharField(required=False), "retryable": serializers.BooleanField(required=False),
        "doc_url": serializers.URLField(required=False),
    }),
})


def openai_error_responses(errors: dict[int, str]) -> dict:
    merged = {401: "Invalid, missing, expired or revoked API key", 403: "IP not allowed",
              429: "Rate limit or daily limit (Retry-After)", 503: "Temporarily unavailable", **errors}
    return {status: OpenApiResponse(OpenAIErrorOutput, description=merged[status]) for status in sorted(merged)}


ImageDatum = inline_serializer("OpenAIImage", {
    "url": serializers.URLField(required=False), "b64_json": serializers.CharField(required=False),
    "revised_prompt": serializers.CharField(), "id": serializers.UUIDField(), "seed": serializers.IntegerField(),
    "width": serializers.IntegerField(), "height": serializers.IntegerField(),
}, many=True)
ImagesResponse = inline_serializer("OpenAIImagesResponse", {
    "created": serializers.IntegerField(), "data": ImageDatum, "output_format": serializers.CharField(),
    "model": serializers.CharField(), "cost_usd": serializers.FloatField(), "balance_usd": serializers.FloatField(),
    "failed": inline_serializer("OpenAIFailedImage", {"id": serializers.UUIDField(), "code": serializers.CharField()},
                                many=True),
})
ModelsResponse = inline_serializer("OpenAIModelList", {
    "object": serializers.CharField(),
    "data": inline_serializer("OpenAIModel", {
        "id": serializers.CharField(), "object": serializers.CharField(), "created": serializers.IntegerField(),
        "owned_by": serializers.CharField(), "name": serializers.CharField(),
    }, many=True),
})


class OpenAIEnvelopeMixin:
    """Every error answer in OpenAI's envelope, with x-should-retry: false where retrying as is
    cannot help (or could charge twice)."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        status = response.status_code
        if status >= 400 and isinstance(response.data, dict) and isinstance(response.data.get("error"), str):
            response.data = openai_error(status, response.data)
            if status in NOT_RETRYABLE:
                response["x-should-retry"] = "false"
        return response


class ImagesGenerationsView(OpenAIEnvelopeMixin, GenerateView):
    """POST /v1/images/generations: GenerateView's throttles, pipeline and bookkeeping, OpenAI's shapes."""

    metrics_endpoint = "openai_images"

    @extend_schema(
        operation_id="openai_images_generations",
        summary="Generate images (OpenAI-compatible)",
        request=ImagesGenerationsInput,
        responses={200: ImagesResponse, **openai_error_responses({
            400: "Invalid request, or CONTENT_POLICY_VIOLATION", 402: "Insufficient balance",
            409: "Same Idempotency-Key still in progress", 413: "Body over 64 KiB",
            422: "NSFW image withheld, or Idempotency-Key reused", 500: "Image generation failed (refunded)"})},
    )
    def post(self, request):
        params, as_base64 = parse_images_request(request)

        def run():
            generations = dispatch.generate_and_wait_all(
                user=request.user, api_key=request.auth, params=params, daily_unit=request_daily_unit(request),
                request_id=request.request_id,
            )
            return images_answer(generations, request=request, as_base64=as_base64)

        status, body, replayed = answer_once(request, run, scope="openai")
        return Response(body, status=status, headers={"Idempotent-Replayed": "true"} if replayed else None)


class ModelsView(OpenAIEnvelopeMixin, ErrorDetailsMixin, APIView):
    """GET /v1/models: our models in OpenAI's list shape (Open WebUI fills its picker from it)."""

    throttle_classes = [FreeEndpointThrottle]

    @extend_schema(operation_id="openai_list_models", summary="List models (OpenAI-compatible)",
                   responses={200: ModelsResponse, **openai_error_responses({})})
    def get(self, request):
        backend = "preview" if request.auth is not None and request.auth.is_test else settings.GENERATION_BACKEND
        return Response({"object": "list", "data": [
            {"id": model.id, "object": "model", "created": 0, "owned_by": "animeapi", "name": model.name}
            for model in catalog.all_models() if catalog.is_available(model, backend_name=backend)]})


@require_GET
def image_file(request, token):
    """GET /v1/images/files/<token>: the WEBP behind a signed, expiring token (see image_file_url).
    No key: the token is the credential, and an Authorization header sent along is ignored."""
    try:
        generation_id = signing.loads(token, salt=IMAGE_FILE_SALT, max_age=max(1, settings.IMAGE_URL_TTL_S))
    except signing.BadSignature:
        raise Http404 from None
    generation = Generation.objects.filter(pk=generation_id, status=Generation.Status.SUCCEEDED).exclude(image="").first()
    if generation is None:
        raise Http404
    response = FileResponse(default_storage.open(generation.image, "rb"), content_type="image/webp")
    response["Cache-Control"] = f"private, max-age={max(1, settings.IMAGE_URL_TTL_S)}"
    return response

