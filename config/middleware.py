import logging
import re
import uuid

import redis.exceptions
from django.conf import settings
from django.http import JsonResponse
from django_redis.exceptions import ConnectionInterrupted

from config import errors
from config.logging import request_id_var

log = logging.getLogger(__name__)

# A client's own request id is kept when it is short and printable; anything else is replaced.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIdMiddleware:
    """Give every request an id (X-Request-ID), echoed on every answer and kept on records."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        sent = request.headers.get("X-Request-ID", "")
        request.request_id = sent if _CLIENT_REQUEST_ID.match(sent) else uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request.request_id
        return response


class ContentSecurityPolicyMiddleware:
    """Send CONTENT_SECURITY_POLICY on every HTML answer (Django 5.2 has no CSP of its own).

    A view can relax it for itself by setting `response["Content-Security-Policy"]` first.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY and response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


# What a non-JSON error answer under /api/ or /v1/ becomes (Django's debug pages, its CSRF page,
# anything a middleware or a plain view answered in HTML).
JSON_ERRORS = {
    400: ("Bad request", "INVALID_REQUEST"),
    403: ("Forbidden", "FORBIDDEN"),
    404: ("Not found", "NOT_FOUND"),
    405: ("Method not allowed", "METHOD_NOT_ALLOWED"),
    413: ("Request body is too large", "REQUEST_TOO_LARGE"),
    500: ("Internal server error", "INTERNAL_ERROR"),
    503: ("Service temporarily unavailable, retry shortly", "SERVICE_UNAVAILABLE"),
}


class JsonErrorsForApiMiddleware:
    """Every error answer of the API is JSON, in every mode: with DEBUG on, Django answers an
    unknown /api/ path or a crash with its HTML debug page before handler404/500 are asked."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (response.status_code >= 400 and errors.wants_json(request)
                and not response.get("Content-Type", "").startswith("application/json")):
            status = response.status_code
            message, code = JSON_ERRORS.get(status, JSON_ERRORS[500 if status >= 500 else 400])
            replacement = JsonResponse(errors.with_details(errors.error_body(message, code), request), status=status)
            for header in ("Allow", "Retry-After"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response


# What the cache raises when Redis is down or unreachable (django-redis re-raises redis-py's own).
CACHE_OUTAGES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionInterrupted)


class CacheUnavailableMiddleware:
    """A page that needs the cache while Redis is down (allauth's login rate limits, the admin's
    login) answers a clear 503 page with Retry-After instead of a 500. The API's own limits answer
    their JSON 503 before an exception gets here."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, CACHE_OUTAGES):
            return None
        log.warning("cache unavailable on %s: %s", request.path, exception)
        return errors.handler503(request)
