"""The free enhancer endpoints: POST /api/enhance and GET /api/tags. Authenticated by API key
like everything under /api/, rate limited in their own bucket, never charged."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import ApiError
from generation.fields import (
    MAX_PROMPT_LENGTH,
    StrictBooleanField,
    StrictCharField,
    error_responses,
    json_object_with_known_fields,
)
from generation.safety import policy
from generation.throttles import FreeEndpointThrottle

from . import enhance_prompt
from .vocabulary import get_vocabulary

MAX_QUERY_LENGTH = 100
DEFAULT_TAG_RESULTS = 20
MAX_TAG_RESULTS = 50


class RateLimitHeadersMixin:
    """X-RateLimit-* on every answer, as /api/generate sends them."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        state = getattr(request, "rate_limit_state", None)
        if state is not None:
            for name, value in state.headers().items():
                response.setdefault(name, value)
        return response


class EnhanceView(RateLimitHeadersMixin, APIView):
    """The enhanced prompt and negative prompt /api/generate would use for this prompt. Free."""

    throttle_classes = [FreeEndpointThrottle]

    class InputSerializer(serializers.Serializer):
        prompt = StrictCharField(max_length=MAX_PROMPT_LENGTH, trim_whitespace=True)
        allowNSFW = StrictBooleanField(default=True)  # the reference's spelling

    class OutputSerializer(serializers.Serializer):
        enhanced_prompt = serializers.CharField()
        negative_prompt = serializers.CharField()

    @extend_schema(
        operation_id="enhance",
        summary="Turn a prompt into Danbooru tags without generating (free)",
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses({400: "Invalid request, or CONTENT_POLICY_VIOLATION"})},
    )
    def post(self, request):
        data = json_object_with_known_fields(request.data, self.InputSerializer)
        serializer = self.InputSerializer(data=data)
        if not serializer.is_valid():
            if "prompt" in serializer.errors:
                raise ApiError(status_code=400, code="INVALID_PROMPT",
                               message=f"prompt must be a string of 1 to {MAX_PROMPT_LENGTH} characters")
            raise ApiError(status_code=400, code="INVALID_ALLOW_NSFW",
                           message="allowNSFW must be a boolean (true or false)")
        values = serializer.validated_data
        policy.enforce_and_record(values["prompt"], user=request.user, api_key=request.auth, endpoint=request.path)
        enhanced = enhance_prompt(values["prompt"], allow_nsfw=values["allowNSFW"])
        positive = policy.checked_enhancement(prompt=values["prompt"], enhanced=enhanced.prompt)
        return Response(self.OutputSerializer(
            {"enhanced_prompt": positive, "negative_prompt": enhanced.negative_prompt}).data)


class TagSearchView(RateLimitHeadersMixin, APIView):
    """Danbooru tags starting with q (names, words inside names, aliases), most used first. Free."""

    throttle_classes = [FreeEndpointThrottle]

    class TagSerializer(serializers.Serializer):
        tag = serializers.CharField(source="name")
        category = serializers.IntegerField()
        post_count = serializers.IntegerField()

    @extend_schema(
        operation_id="tags",
        summary="Autocomplete Danbooru tags, most used first (free)",
        parameters=[
            OpenApiParameter("q", str, required=True, description="A tag, alias or word prefix: \"blue h\", \"miku\""),
            OpenApiParameter("limit", int, required=False, description=f"1 to {MAX_TAG_RESULTS}"),
        ],
        responses={200: inline_serializer("TagResults", {"results": TagSerializer(many=True)}),
                   **error_responses({400: "Missing or over-long q, or a bad limit"})},
    )
    def get(self, request):
        query = request.query_params.get("q", "").strip()
        if not query or len(query) > MAX_QUERY_LENGTH:
            raise ApiError(status_code=400, code="INVALID_QUERY",
                           message=f"q must be 1 to {MAX_QUERY_LENGTH} characters")
        limit = request.query_params.get("limit", str(DEFAULT_TAG_RESULTS))
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_TAG_RESULTS:
            raise ApiError(status_code=400, code="INVALID_LIMIT", message=f"limit must be 1 to {MAX_TAG_RESULTS}")
        tags = get_vocabulary().search(query, limit=int(limit))
        return Response({"results": self.TagSerializer(tags, many=True).data})
