"""Every API error is JSON in the reference's shape: {"error": "...", "code": "..."}."""

import logging

from django.http import JsonResponse
from django.shortcuts import render
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

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
    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected exception: Django's handler500 answers (JSON under /api/)
    code, message = _code_and_message(exc)
    if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated):
        response.status_code = status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, exceptions.UnsupportedMediaType):
        # The reference has one answer for a body we cannot read: 400.
        response.status_code = status.HTTP_400_BAD_REQUEST
    response.data = error_body(message, code)
    for name, value in getattr(exc, "headers", {}).items():
        response[name] = value
    return response


def _wants_json(request):
    return request.path.startswith("/api/") or request.path.startswith("/billing/stripe/")


def handler404(request, exception=None):
    if _wants_json(request):
        return JsonResponse(error_body("Not found", "NOT_FOUND"), status=404)
    return render(request, "404.html", status=404)


def handler500(request):
    if _wants_json(request):
        return JsonResponse(error_body("Internal server error", "INTERNAL_ERROR"), status=500)
    return render(request, "500.html", status=500)


def handler400(request, exception=None):
    if _wants_json(request):
        return JsonResponse(error_body("Bad request", "INVALID_REQUEST"), status=400)
    return render(request, "400.html", status=400)
