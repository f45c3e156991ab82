"""The playground: the API's own pipeline, limits and charge, for a signed-in user's session."""

import dataclasses

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser
from rest_framework.renderers import TemplateHTMLRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import ledger, pricing
from generation import catalog, dispatch, enhance
from generation.api import MAX_IMAGES, MAX_NEGATIVE_PROMPT_LENGTH, GenerateView, parse_generate_request
from generation.fields import MAX_PROMPT_LENGTH
from generation.resources import answer_for_all
from generation.models import ORIENTATIONS
from generation.safety import policy
from generation.throttles import FreeEndpointThrottle


def playground_body(form) -> dict:
    """The playground form as the API's JSON body. An unchecked box is absent from a form: false."""
    count = form.get("n") or "1"
    return {
        "prompt": form.get("prompt", ""),
        "orientation": form.get("orientation") or "portrait",
        "allowNSFW": form.get("allowNSFW") == "true",
        "enhance": form.get("enhance") == "true",
        # Not a number stays a string, so the API's own check answers INVALID_N.
        "n": int(count) if count.isdigit() else count,
        "negative_prompt": form.get("negative_prompt", ""),
        "model": form.get("model", ""),
    }


def model_family(model_id: str) -> str:
    """The enhancer style of a model the form names (the default's for an unknown one)."""
    try:
        return catalog.get_model(model_id).family
    except catalog.UnknownModel:
        return catalog.default_model().family


class PlaygroundFormParser(FormParser):
    """Hands the API's own validation (parse_generate_request) exactly what a JSON client would send."""

    def parse(self, stream, media_type=None, parser_context=None):
        return playground_body(super().parse(stream, media_type, parser_context))


class PlaygroundFragmentMixin:
    """An htmx fragment for the logged-in user (session + CSRF token in a header, not an API key).

    Errors keep the API's status and headers but are rendered in words by the same template.
    """

    authentication_classes = [SessionAuthentication]
    renderer_classes = [TemplateHTMLRenderer]

    def handle_exception(self, exc):
        response = super().handle_exception(exc)  # the API's {"error", "code"} body and headers
        retry_after = response.get("Retry-After")
        response.data = {"status": response.status_code, "body": response.data,
                         "retry_after": int(retry_after) if retry_after else None}
        response.exception = False  # render our template, not DRF's generic exception page
        return response


@extend_schema(exclude=True)
class PlaygroundGenerateView(PlaygroundFragmentMixin, GenerateView):
    """POST /playground/generate: the API's pipeline, limits and charge, for the user's session.

    GenerateView's throttles bucket a keyless request per user and take its daily unit; the
    generation adopts it (see generation.quota), as for an API request.
    """

    parser_classes = [PlaygroundFormParser]
    template_name = "playground/page.html#result"

    def post(self, request):
        # The playground always waits for its image (a Prefer: respond-async header changes nothing).
        params = dataclasses.replace(parse_generate_request(request), is_async=False, webhook_url="")
        generations = dispatch.generate_and_wait_all(user=request.user, api_key=None, params=params,
                                                     daily_unit=request.daily_unit, request_id=request.request_id)
        status, body = answer_for_all(generations, request=request)
        delivered = [g for g in generations if g.status == g.Status.SUCCEEDED]
        return Response({"status": status, "body": body, "generation": (delivered or generations)[0],
                         "generations": delivered, "failed_count": len(generations) - len(delivered),
                         "cost": sum(g.cost_usd for g in delivered),
                         "balance": ledger.balance(user=request.user)}, status=status)


@extend_schema(exclude=True)
class PlaygroundEnhanceView(PlaygroundFragmentMixin, APIView):
    """GET /playground/enhance: the prompt the backend would receive, shown while the user types."""

    throttle_classes = [FreeEndpointThrottle]
    template_name = "playground/page.html#enhanced"

    def get(self, request):
        body = playground_body(request.query_params)
        prompt = body["prompt"].strip()[:MAX_PROMPT_LENGTH]
        if policy.check(prompt).violates:
            return Response({"status": 200, "preview": policy.REFUSAL_MESSAGE, "enhance": body["enhance"]})
        if prompt and body["enhance"]:
            enhanced = enhance.enhance_prompt(prompt, allow_nsfw=body["allowNSFW"],
                                              style=model_family(body["model"])).prompt
            try:
                prompt = policy.checked_enhancement(prompt=prompt, enhanced=enhanced)
            except policy.ContentPolicyViolation:
                prompt = policy.REFUSAL_MESSAGE
        return Response({"status": 200, "preview": prompt, "enhance": body["enhance"]})


@login_required
@require_GET
def playground(request):
    # A prompt and orientation may come from "try again" links in the history.
    orientation = request.GET.get("orientation")
    return render(request, "playground/page.html", {
        "balance": ledger.balance(user=request.user),
        "price": pricing.image_price(),
        "prompt": request.GET.get("prompt", "")[:MAX_PROMPT_LENGTH],
        "orientation": orientation if orientation in ORIENTATIONS else "portrait",
        "orientations": ORIENTATIONS,
        "max_prompt_length": MAX_PROMPT_LENGTH,
        "max_negative_prompt_length": MAX_NEGATIVE_PROMPT_LENGTH,
        "image_counts": range(1, MAX_IMAGES + 1),
        "models": [model for model in catalog.all_models()
                   if catalog.is_available(model, backend_name=settings.GENERATION_BACKEND)],
        "default_model": catalog.default_model().id,
    })
