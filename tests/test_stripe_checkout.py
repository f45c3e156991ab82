import uuid
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.test import Client

from billing import ledger
from billing.models import LedgerEntry, TopUp
from tests.test_stripe_standin import (  # noqa: F401  (fixtures: stripe_api, fast_password_hashing)
    SECRET_KEY,
    fast_password_hashing,
    stripe_api,
    stripe_error,
)

TOPUP_URL = "/billing/topup/"
SESSIONS_PATH = "/v1/checkout/sessions"


@pytest.fixture
def checkout_api(stripe_api):
    """Stripe's session create, with its idempotency: the same key answers the same session."""
    sessions_by_key = {}

    def create_session(request):
        key = request.headers.get("idempotency-key")
        if key not in sessions_by_key:
            session_id = f"cs_test_{len(sessions_by_key) + 1}"
            sessions_by_key[key] = {
                "id": session_id,
                "object": "checkout.session",
                "mode": request.form["mode"],
                "status": "open",
                "payment_status": "unpaid",
                "amount_total": int(request.form["line_items[0][price_data][unit_amount]"]),
                "currency": request.form["line_items[0][price_data][currency]"],
                "client_reference_id": request.form["client_reference_id"],
                "payment_intent": None,
                "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            }
        return 200, sessions_by_key[key]

    stripe_api.route("POST", SESSIONS_PATH, create_session)
    return stripe_api


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


def test_topup_creates_a_checkout_session_and_redirects_to_stripe(alice, charlie, alice_client, checkout_api):
    token = uuid.uuid4()

    response = alice_client.post(TOPUP_URL, {"amount": "25", "request_token": str(token)})

    assert response.status_code == HTTPStatus.SEE_OTHER
    assert response["Location"] == "https://checkout.stripe.com/c/pay/cs_test_1"
    [sent] = checkout_api.requests_to("POST", SESSIONS_PATH)
    assert sent.form == {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "2500",
        "line_items[0][price_data][product_data][name]": "AnimeAPI balance top-up",
        "client_reference_id": str(alice.pk),
        "metadata[user_id]": str(alice.pk),
        "metadata[purpose]": "animeapi_balance_topup",
        "payment_intent_data[metadata][user_id]": str(alice.pk),
        "payment_intent_data[metadata][purpose]": "animeapi_balance_topup",
        "customer_email": "alice@example.com",
        "success_url": "http://testserver/billing/topup/success/?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://testserver/billing/topup/cancel/",
    }
    assert sent.headers["idempotency-key"] == f"topup:{alice.pk}:{token}:2500"
    assert sent.headers["authorization"] == f"Bearer {SECRET_KEY}"
    topup = TopUp.objects.get()
    assert (topup.user, topup.checkout_session_id, topup.amount, topup.status) == (
        alice, "cs_test_1", Decimal("25"), TopUp.Status.PENDING,
    )
    # Nothing is credited until Stripe says the session is paid.
    assert ledger.balance(user=alice) == Decimal("1")
    assert ledger.balance(user=charlie) == Decimal("1")
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.TOPUP).exists()


@pytest.mark.parametrize("amount, cents", [("5", 500), ("10", 1000), ("50", 5000), ("12.34", 1234), ("500", 50000)])
def test_amount_reaches_stripe_in_cents(alice_client, checkout_api, amount, cents):
    response = alice_client.post(TOPUP_URL, {"amount": amount, "request_token": str(uuid.uuid4())})

    assert response.status_code == HTTPStatus.SEE_OTHER
    [sent] = checkout_api.requests_to("POST", SESSIONS_PATH)
    assert sent.form["line_items[0][price_data][unit_amount]"] == str(cents)
    assert TopUp.objects.get().amount == Decimal(amount)


def test_double_submit_opens_one_session(alice, alice_client, checkout_api):
    form = {"amount": "10", "request_token": str(uuid.uuid4())}

    first = alice_client.post(TOPUP_URL, form)
    second = alice_client.post(TOPUP_URL, form)

    assert first["Location"] == second["Location"]
    keys = {r.headers["idempotency-key"] for r in checkout_api.requests_to("POST", SESSIONS_PATH)}
    assert len(keys) == 1
    assert TopUp.objects.filter(user=alice).count() == 1


def test_a_new_page_opens_a_new_session(alice, alice_client, checkout_api):
    alice_client.post(TOPUP_URL, {"amount": "10", "request_token": str(uuid.uuid4())})
    alice_client.post(TOPUP_URL, {"amount": "10", "request_token": str(uuid.uuid4())})

    assert TopUp.objects.filter(user=alice).count() == 2


def test_missing_request_token_still_tops_up(alice, alice_client, checkout_api):
    response = alice_client.post(TOPUP_URL, {"amount": "10"})

    assert response.status_code == HTTPStatus.SEE_OTHER
    assert TopUp.objects.filter(user=alice).count() == 1


@pytest.mark.parametrize("amount", ["4.99", "500.01", "0", "-10", "abc", "", "NaN", "Infinity", "10.001"])
def test_invalid_amount_re_renders_with_an_error(alice, alice_client, checkout_api, amount):
    response = alice_client.post(TOPUP_URL, {"amount": amount, "request_token": str(uuid.uuid4())})

    assert response.status_code == HTTPStatus.OK
    assert response.templates[0].name == "billing/home.html"
    assert response.context["form"].errors["amount"]
    assert 'aria-invalid="true"' in response.content.decode()
    assert not checkout_api.requests
    assert not TopUp.objects.exists()
    assert ledger.balance(user=alice) == Decimal("1")


def test_out_of_range_amount_names_the_limits(alice_client, checkout_api):
    response = alice_client.post(TOPUP_URL, {"amount": "1000", "request_token": str(uuid.uuid4())})

    assert "Choose an amount between $5 and $500." in response.content.decode()


def test_limits_come_from_settings(alice_client, checkout_api, settings):
    settings.STRIPE_MIN_TOPUP_USD = Decimal("20")

    response = alice_client.post(TOPUP_URL, {"amount": "10", "request_token": str(uuid.uuid4())})

    assert "Choose an amount between $20 and $500." in response.content.decode()
    assert not checkout_api.requests
    home = alice_client.get("/billing/").content.decode()
    assert 'value="25"' in home and 'value="50"' in home
    assert 'value="5"' not in home and 'value="10"' not in home


def test_stripe_error_re_renders_and_stores_nothing(alice, alice_client, stripe_api):
    stripe_api.route("POST", SESSIONS_PATH, lambda request: (400, stripe_error("Invalid currency")))

    response = alice_client.post(TOPUP_URL, {"amount": "10", "request_token": str(uuid.uuid4())})

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert "Stripe could not start the payment" in response.content.decode()
    assert not TopUp.objects.exists()
    assert ledger.balance(user=alice) == Decimal("1")


def test_without_a_secret_key_top_ups_are_not_configured(alice, alice_client, settings):
    settings.STRIPE_SECRET_KEY = ""

    page = alice_client.get("/billing/")
    response = alice_client.post(TOPUP_URL, {"amount": "10", "request_token": str(uuid.uuid4())})

    assert page.status_code == HTTPStatus.OK
    assert "Top-ups are not configured" in page.content.decode()
    assert "Continue to payment" not in page.content.decode()
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert "Top-ups are not configured" in response.content.decode()
    assert not TopUp.objects.exists()


def test_topup_needs_a_login(alice, checkout_api):
    response = Client().post(TOPUP_URL, {"amount": "10", "request_token": str(uuid.uuid4())})

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/accounts/login/")
    assert not checkout_api.requests


def test_topup_needs_a_csrf_token(alice, checkout_api):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(TOPUP_URL, {"amount": "10", "request_token": str(uuid.uuid4())})

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not checkout_api.requests


def test_topup_form_posts_with_its_csrf_token(alice, checkout_api):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get("/billing/")
    token = page.context["request_token"]

    response = client.post(
        TOPUP_URL, {"amount": "10", "request_token": str(token), "csrfmiddlewaretoken": page.context["csrf_token"]}
    )

    assert response.status_code == HTTPStatus.SEE_OTHER
    assert TopUp.objects.get().user == alice


def test_topup_answers_only_post(alice_client, checkout_api):
    assert alice_client.get(TOPUP_URL).status_code == HTTPStatus.METHOD_NOT_ALLOWED
