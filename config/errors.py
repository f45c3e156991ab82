"""Every API error is JSON in the reference's shape, {"error": "...", "code": "..."}, plus
request_id, retryable and doc_url (added fields only)."""

import logging

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework import exceptions, status

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with the reference's code, raised anywhere under a DRF view."""

    def __init__(self, *, status_code, code, message, headers=None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(message, code):
    return {"error": message, "code": code}


# Codes worth retrying as they are (after Retry-After, where sent); the rest need a change first.
RETRYABLE_CODES = {"RATE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED", "GENERATION_FAILED", "SERVICE_UNAVAILABLE",
                   "IDEMPOTENCY_IN_PROGRESS", "INTERNAL_ERROR", "GENERATION_IN_PROGRESS"}


def is_retryable(code: str) -> bool:
    return code in RETRYABLE_CODES


def with_details(body: dict, request) -> dict:
    """Beyond the reference's {"error", "code"}: the request id to quote to support, whether to
    retry, and the docs section for the code."""
    code = body.get("code", "")
    try:
        base = settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")
    except DisallowedHost:  # the very error being answered may be a bad Host header
        base = ""
    return {**body, "request_id": getattr(request, "request_id", ""), "retryable": is_retryable(code),
            "doc_url": f"{base}/docs/#error-{code}"}


class ErrorDetailsMixin:
    """For API views: every error answer carries with_details()."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 400 and isinstance(response.data, dict) and "code" in response.data:
            response.data = with_details(response.data, request)
        return response


def _code_and_message(exc):
    if isinstance(exc, ApiError):
        return exc.code, exc.message
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return "INVALID_KEY", "Invalid API key"
    if isinstance(exc, exceptions.MethodNotAllowed):
        return "METHOD_NOT_ALLOWED", str(exc.detail)
    if isinstance(exc, exceptions.ParseError):
        return "INVALID_JSON", "Request body is not valid JSON"
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return "INVALID_CONTENT_TYPE", "Content-Type must be application/json"
    if isinstance(exc, exceptions.NotFound):
        return "NOT_FOUND", "Not found"
    if isinstance(exc, exceptions.PermissionDenied):
        return "FORBIDDEN", str(exc.detail)
    if isinstance(exc, exceptions.Throttled):
        return "RATE_LIMIT_EXCEEDED", "Rate limit exceeded"
    if isinstance(exc, exceptions.NotAcceptable):
        return "NOT_ACCEPTABLE", "This endpoint answers application/json"
    return "INVALID_REQUEST", "Invalid request"


def api_exception_handler(exc, context):
    # Imported here: rest_framework.views imports the authentication classes, which raise ApiError.
    from rest_framework.views import exception_handler

    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is unreachable (a restart, a failover): retryable, and nothing was charged
        # that the stale-generation task will not refund.
        log.warning("database unavailable: %s", exc)
        exc = ApiError(status_code=503, code="SERVICE_UNAVAILABLE", message="Service temporarily unavailable, retry shortly",
                       headers={"Retry-After": "5"})
    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected exception: Django's handler500 answers (JSON under /api/)
    code, message = _code_and_message(exc)
    if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated):
        response.status_code = status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, exceptions.UnsupportedMediaType):
        # The reference has one answer for a body we cannot read: 400.
        response.status_code = status.HTTP_400_BAD_REQUEST
    response.data = with_details(error_body(message, code), context["request"])
    for name, value in getattr(exc, "headers", {}).items():
        response[name] = value
    return response


def wants_json(request) -> bool:
    """The API, its OpenAI-compatible surface and the Stripe webhook answer JSON, never HTML."""
    return request.path.startswith(("/api/", "/v1/", "/billing/stripe/"))


def handler404(request, exception=None):
    if wants_json(request):
        return JsonResponse(with_details(error_body("Not found", "NOT_FOUND"), request), status=404)
    return render(request, "404.html", status=404)


def handler500(request):
    if wants_json(request):
        return JsonResponse(with_details(error_body("Internal server error", "INTERNAL_ERROR"), request), status=500)
    return render(request, "500.html", status=500)


def handler400(request, exception=None):
    if wants_json(request):
        return JsonResponse(with_details(error_body("Bad request", "INVALID_REQUEST"), request), status=400)
    return render(request, "400.html", status=400)


def handler503(request):
    """A dependency (Redis, the database) is unreachable: say so and when to retry, not a 500."""
    if wants_json(request):
        response = JsonResponse(
            with_details(error_body("Service temporarily unavailable, retry shortly", "SERVICE_UNAVAILABLE"), request),
            status=503)
    else:
        response = render(request, "503.html", status=503)
    response["Retry-After"] = "30"
    return response
