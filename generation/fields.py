"""What every JSON endpoint of the API shares: strict field types, the refusal of unknown fields,
and the error shape with the errors any endpoint behind a key can answer (for the schema)."""

import functools

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from config.errors import ApiError

MAX_PROMPT_LENGTH = 1000  # characters, after trimming (the reference's limit)


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


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: "42", 4.2 and true are type errors."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


@functools.cache
def field_names(serializer_class) -> frozenset:
    # Building a serializer's fields deep-copies every declared field: once per class is enough.
    return frozenset(serializer_class().fields)


def json_object_with_known_fields(data, serializer_class) -> dict:
    """The body as a dict whose keys the serializer knows. Unknown fields are refused, not
    ignored: a misspelt "allowNsfw": false must not quietly allow NSFW."""
    if not isinstance(data, dict):
        raise ApiError(status_code=400, code="INVALID_REQUEST", message="Request body must be a JSON object")
    unknown = sorted(set(data) - field_names(serializer_class))
    if unknown:
        raise ApiError(status_code=400, code="UNKNOWN_FIELD", message=f"Unknown field: {unknown[0]}")
    return data


def validated_body(request, serializer_class, *, codes: dict, messages: dict, max_bytes: int) -> tuple[dict, dict]:
    """The raw body and its validated values; otherwise 413, or a 400 naming the first bad field
    (in `codes`' order) with its code and message. Nothing is charged before this passes."""
    if int(request.META.get("CONTENT_LENGTH") or 0) > max_bytes:
        raise ApiError(status_code=413, code="REQUEST_TOO_LARGE",
                       message=f"Request body is larger than {max_bytes // 1024} KiB")
    data = json_object_with_known_fields(request.data, serializer_class)
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        field = next(name for name in codes if name in serializer.errors)
        message = "prompt is required" if field == "prompt" and "prompt" not in data else messages[field]
        raise ApiError(status_code=400, code=codes[field], message=message)
    return data, serializer.validated_data


ErrorOutput = inline_serializer("Error", {
    "error": serializers.CharField(), "code": serializers.CharField(), "request_id": serializers.CharField(),
    "retryable": serializers.BooleanField(), "doc_url": serializers.URLField(),
})

# What any endpoint behind an API key can answer, whatever it does.
COMMON_ERRORS = {
    401: "Invalid, missing, expired or revoked API key",
    403: "The key's IP allow-list does not include this address",
    429: "Rate limit exceeded",
    503: "Temporarily unavailable (retry after Retry-After)",
}


def error_responses(errors: dict[int, str]) -> dict:
    """OpenAPI responses for an operation's own errors plus COMMON_ERRORS, all in the error shape."""
    merged = {**COMMON_ERRORS, **errors}
    return {status: OpenApiResponse(ErrorOutput, description=merged[status]) for status in sorted(merged)}
