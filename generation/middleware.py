"""OpenAI's error envelope for the /v1/ answers Django gives before any view runs (an unknown
path, a method no view takes, a crash), so OpenAI's clients read every /v1/ error alike."""

import json

from django.http import JsonResponse

from .openai_compat import NOT_RETRYABLE, openai_error


class OpenAIErrorEnvelopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith("/v1/") or response.status_code < 400:
            return response
        if not response.get("Content-Type", "").startswith("application/json"):
            return response
        try:
            body = json.loads(response.content)
        except (ValueError, AttributeError):  # a streamed answer has no .content
            return response
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            return response  # already in OpenAI's envelope (the /v1 views wrap their own)
        wrapped = JsonResponse(openai_error(response.status_code, body), status=response.status_code)
        for header in ("Allow", "Retry-After", "X-Request-ID"):
            if header in response:
                wrapped[header] = response[header]
        if response.status_code in NOT_RETRYABLE:
            wrapped["x-should-retry"] = "false"
        return wrapped
