"""Billing pages (balance, top-ups, ledger) and Stripe's webhook endpoint."""

import uuid
from http import HTTPStatus

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from config.errors import error_body

from . import alerts, autorecharge, cards, ledger, stripe, topups, webhooks
from .forms import AutoRechargeForm, LowBalanceAlertForm, TopUpForm
from .models import LedgerEntry, Recharge, StripeEvent, TopUp

LEDGER_PAGE_SIZE = 25
RECENT_TOPUPS = 25
RECENT_RECHARGES = 10


class HttpResponseSeeOther(HttpResponseRedirect):
    status_code = HTTPStatus.SEE_OTHER


@login_required
@require_GET
def home(request):
    return _render_home(request, form=TopUpForm(), request_token=uuid.uuid4())


@login_required
@require_POST
def topup(request):
    form = TopUpForm(request.POST)
    request_token = _request_token(request.POST.get("request_token"))
    if not stripe.is_configured():
        return _render_home(request, form=form, request_token=request_token, status=HTTPStatus.SERVICE_UNAVAILABLE)
    if not form.is_valid():
        return _render_home(request, form=form, request_token=request_token)
    try:
        session = topups.start_topup(
            user=request.user,
            amount=form.cleaned_data["amount"],
            request_token=request_token,
            # Stripe fills in {CHECKOUT_SESSION_ID}; it must reach Stripe unescaped.
            success_url=_absolute_url(request, "billing:topup-success") + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=_absolute_url(request, "billing:topup-cancel"),
            save_card=form.cleaned_data["save_card"],
        )
    except stripe.StripeUnavailable:
        form.add_error(None, "Stripe could not start the payment. Nothing was charged; please try again in a moment.")
        return _render_home(request, form=form, request_token=request_token, status=HTTPStatus.BAD_GATEWAY)
    return HttpResponseSeeOther(session.url)


@login_required
@require_POST
def card_setup(request):
    """Add or replace the saved card through Checkout in setup mode; nothing is charged."""
    if not stripe.is_configured():
        return _render_home(request, form=TopUpForm(), request_token=uuid.uuid4(), status=HTTPStatus.SERVICE_UNAVAILABLE)
    try:
        session = cards.start_card_setup(
            user=request.user,
            request_token=_request_token(request.POST.get("request_token")),
            success_url=_absolute_url(request, "billing:home") + "?card=saving#card",
            cancel_url=_absolute_url(request, "billing:home") + "#card",
        )
    except stripe.StripeUnavailable:
        messages.error(request, "Stripe could not open the card form. Please try again in a moment.")
        return HttpResponseSeeOther(reverse("billing:home") + "#card")
    return HttpResponseSeeOther(session.url)


@login_required
@require_POST
def card_remove(request):
    try:
        cards.remove_card(user=request.user)
    except stripe.StripeUnavailable:
        messages.error(request, "Stripe could not remove the card. It is still saved; please try again in a moment.")
    else:
        messages.success(request, "Your card was removed. Auto-recharge stays off until you save a card again.")
    return HttpResponseSeeOther(reverse("billing:home") + "#card")


@login_required
@require_POST
def auto_recharge_settings(request):
    form = AutoRechargeForm(request.POST)
    if not form.is_valid():
        return _render_home(request, form=TopUpForm(), request_token=uuid.uuid4(), auto_recharge_form=form,
                            status=HTTPStatus.BAD_REQUEST)
    rule = autorecharge.save_settings(user=request.user, **form.cleaned_data)
    if not rule.enabled:
        messages.success(request, "Auto-recharge is off.")
    elif cards.card_of(user=request.user) is None:
        messages.warning(request, "Settings saved. Auto-recharge starts once you save a card.")
    else:
        messages.success(request, f"We will add ${rule.amount:.2f} when your balance falls below "
                                  f"${rule.threshold:.2f}, at most ${rule.monthly_cap:.2f} a month.")
    return HttpResponseSeeOther(reverse("billing:home") + "#auto-recharge")


@login_required
@require_GET
def topup_success(request):
    session_id = request.GET.get("session_id", "")
    topup = TopUp.objects.filter(user=request.user, checkout_session_id=session_id).first() if session_id else None
    return render(
        request, "billing/topup_success.html", {"topup": topup, "balance": ledger.balance(user=request.user)}
    )


@login_required
@require_GET
def topup_cancel(request):
    return render(request, "billing/topup_cancel.html", {"balance": ledger.balance(user=request.user)})


@csrf_exempt
def stripe_webhook(request):
    """Stripe's signature is the authentication; there is no session or CSRF token to check."""
    if request.method != "POST":
        return JsonResponse(
            error_body("Method not allowed", "METHOD_NOT_ALLOWED"),
            status=HTTPStatus.METHOD_NOT_ALLOWED,
            headers={"Allow": "POST"},
        )
    try:
        event = webhooks.receive_event(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except stripe.InvalidWebhook as exc:
        return JsonResponse(error_body(exc.message, exc.code), status=HTTPStatus.BAD_REQUEST)
    except stripe.StripeNotConfigured:
        return JsonResponse(
            error_body("Stripe webhooks are not configured", "SERVICE_UNAVAILABLE"),
            status=HTTPStatus.SERVICE_UNAVAILABLE,
        )
    if event.outcome == StripeEvent.Outcome.FAILED:
        return JsonResponse(
            error_body("The event could not be processed", "PROCESSING_FAILED"), status=HTTPStatus.INTERNAL_SERVER_ERROR
        )
    return JsonResponse({"received": True, "outcome": event.outcome})


@login_required
@require_POST
def alert_settings(request):
    form = LowBalanceAlertForm(request.POST)
    if not form.is_valid():
        return _render_home(request, form=TopUpForm(), request_token=uuid.uuid4(), alert_form=form,
                            status=HTTPStatus.BAD_REQUEST)
    alerts.set_threshold(user=request.user, threshold=form.cleaned_data["threshold"])
    threshold = form.cleaned_data["threshold"]
    messages.success(request, f"We will e-mail you when your balance falls below ${threshold:.2f}."
                     if threshold is not None else "Low-balance alerts are off.")
    return HttpResponseSeeOther(reverse("billing:home"))


def _render_home(request, *, form, request_token, status=HTTPStatus.OK, alert_form=None, auto_recharge_form=None):
    ledger_pages = Paginator(LedgerEntry.objects.filter(user=request.user), LEDGER_PAGE_SIZE)
    rule = autorecharge.settings_of(user=request.user)
    if auto_recharge_form is None:
        initial = ({"enabled": rule.enabled, "threshold": rule.threshold, "amount": rule.amount,
                    "monthly_cap": rule.monthly_cap} if rule else
                   {"threshold": "2", "amount": "25", "monthly_cap": "100"})
        auto_recharge_form = AutoRechargeForm(initial=initial)
    context = {
        "balance": ledger.balance(user=request.user),
        "form": form,
        "request_token": request_token,
        "preset_amounts": topups.preset_amounts(),
        "min_topup_usd": settings.STRIPE_MIN_TOPUP_USD,
        "max_topup_usd": settings.STRIPE_MAX_TOPUP_USD,
        "stripe_configured": stripe.is_configured(),
        "topups": TopUp.objects.filter(user=request.user)[:RECENT_TOPUPS],
        "entries": ledger_pages.get_page(request.GET.get("page")),
        "alert_form": alert_form or LowBalanceAlertForm(initial={"threshold": alerts.threshold_of(user=request.user)}),
        "card": cards.card_of(user=request.user),
        "card_saving": request.GET.get("card") == "saving",
        "auto_recharge": rule,
        "auto_recharge_form": auto_recharge_form,
        "recharges": Recharge.objects.filter(user=request.user)[:RECENT_RECHARGES],
    }
    return render(request, "billing/home.html", context, status=status)


def _request_token(value) -> uuid.UUID:
    # A missing or mangled token only loses double-submit protection; it never blocks a top-up.
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return uuid.uuid4()


def _absolute_url(request, name: str) -> str:
    path = reverse(name)
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    return request.build_absolute_uri(path)
