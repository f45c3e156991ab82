"""The dashboard's pages: landing, dashboard, API keys, usage history, API docs."""

import datetime

from django.conf import settings
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from accounts.apikeys import TooManyKeys, create_api_key, revoke_api_key, rotate_webhook_secret, set_key_limits
from accounts.forms import ApiKeyForm, KeyLimitsForm
from accounts.models import ApiKey
from billing import pricing
from generation.models import ORIENTATIONS, Generation

from . import apidocs, history
from .key_limits import limits_summary, spent_today_usd
from .pages import dashboard_summary, owned_or_404, public_base_url, render_page

REVOKED_KEYS_SHOWN = 20


def _limits():
    return {
        "price": pricing.image_price(),
        "rate_limit": settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE,
        "daily_limit": settings.ANIMEAPI_DAILY_LIMIT,
        "orientations": ORIENTATIONS,
    }


@require_GET
def landing(request):
    return render(request, "landing.html", {**_limits(), "base_url": public_base_url(request)})


@login_required
@require_GET
def dashboard(request):
    return render(request, "dashboard/page.html", {"summary": dashboard_summary(user=request.user), **_limits()})


@login_required
@require_http_methods(["GET", "POST"])
def keys(request):
    form = ApiKeyForm(request.POST if request.method == "POST" else None)
    new_key = created = None
    if form.is_valid():
        try:
            created, new_key = create_api_key(
                user=request.user, name=form.cleaned_data["name"], test=form.cleaned_data["test"]
            )
        except TooManyKeys:
            form.add_error(None, f"You already have {settings.ANIMEAPI_MAX_KEYS_PER_USER} live keys, the most an "
                                 "account can hold. Revoke one you no longer use, then create the new one.")
        else:
            form = ApiKeyForm()
    user_keys = ApiKey.objects.filter(user=request.user)
    context = {
        "form": form,
        "new_key": new_key,
        "created": created,
        "live_keys": [(key, limits_summary(key)) for key in user_keys.live()],
        "revoked_keys": user_keys.filter(revoked_at__isnull=False).order_by("-revoked_at")[:REVOKED_KEYS_SHOWN],
        "max_keys": settings.ANIMEAPI_MAX_KEYS_PER_USER,
        "base_url": public_base_url(request),
    }
    response = render_page(request, "keys/page.html", context, partial="panel")
    # The only copy of a new key, and the webhook secret, must not linger in a cache.
    add_never_cache_headers(response)
    return response


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke(request, key_id):
    api_key = owned_or_404(ApiKey, user=request.user, pk=key_id)
    if request.method == "POST":
        if revoke_api_key(api_key=api_key):
            messages.success(request, f"Key “{api_key.name or api_key.prefix}” revoked. "
                                      "Requests that use it now get 401 INVALID_KEY.")
        return redirect("keys")
    return render(request, "keys/revoke.html", {"api_key": api_key})


@login_required
@require_http_methods(["GET", "POST"])
def key_limits(request, key_id):
    # Revoked keys answer 404 too: their limits can no longer matter.
    api_key = owned_or_404(ApiKey.objects.live(), user=request.user, pk=key_id)
    form = KeyLimitsForm(request.POST if request.method == "POST" else None, instance=api_key)
    if form.is_valid():
        if set_key_limits(api_key=api_key, **form.cleaned_data):
            messages.success(request, f"Limits saved for “{api_key.name or api_key.prefix}”.")
        else:
            messages.error(request, f"“{api_key.name or api_key.prefix}” was revoked meanwhile; nothing was saved.")
        return redirect("keys")
    return render(request, "keys/limits.html", {
        "api_key": api_key,
        "form": form,
        "spent_today": spent_today_usd(api_key=api_key),
    })


@login_required
@require_http_methods(["GET", "POST"])
def webhook_secret_rotate(request):
    if request.method == "POST":
        rotate_webhook_secret(user=request.user)
        messages.success(request, "Webhook secret rotated. Webhooks are now signed with the new one.")
        return redirect(f"{reverse('keys')}#webhooks")
    return render(request, "keys/rotate.html")


@require_GET
def docs(request):
    return render(request, "docs/page.html", {
        **_limits(),
        "base_url": public_base_url(request),
        "error_codes": apidocs.ERROR_CODES,
        "headers": apidocs.HEADERS,
    })


class InteractiveDocsView(SpectacularSwaggerSplitView):
    """Swagger UI under our Content-Security-Policy, for everyone (no key needed to read docs).

    The split view serves its start-up script as a file (script-src 'self' holds); Swagger UI
    itself sets inline styles, so this page alone allows them.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY.replace(
            "style-src 'self'", "style-src 'self' 'unsafe-inline'"
        )
        return response


@login_required
@require_GET
def usage_history(request):
    form = history.HistoryFilterForm(request.GET, user=request.user)
    rows = history.filter_generations(user=request.user, **form.filters)
    start, end = history.chart_range(**form.filters)
    return render_page(request, "history/page.html", {
        "form": form,
        "page": Paginator(rows, history.PAGE_SIZE).get_page(request.GET.get("page")),
        "charts": history.usage_charts(history.daily_totals(rows, start=start, end=end)),
        "filtered": bool(form.filters),
    }, partial="results")


@login_required
@require_GET
def usage_history_csv(request):
    form = history.HistoryFilterForm(request.GET, user=request.user)
    rows = history.filter_generations(user=request.user, **form.filters)
    response = StreamingHttpResponse(history.csv_lines(rows, request=request), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="animeapi-history-{datetime.datetime.now(datetime.UTC):%Y-%m-%d}.csv"'
    )
    return response


@login_required
@require_GET
def generation_detail(request, generation_id):
    generation = owned_or_404(Generation.objects.select_related("api_key"), user=request.user, pk=generation_id)
    return render(request, "history/detail.html", {"generation": generation})
