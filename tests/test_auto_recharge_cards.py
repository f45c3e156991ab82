"""Saving a card and the auto-recharge settings, where Checkout is involved: localstripe has no
Checkout, so these run against our Checkout stand-in (tests/test_stripe_standin.py), through the
real `stripe` library and our real webhook URL."""

import json
import uuid
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.core import mail
from django.test import Client

from billing import autorecharge, ledger
from billing.models import AutoRecharge, LedgerEntry, Recharge, StripeCustomer, StripeEvent, Wallet
from tests.test_stripe_standin import (  # noqa: F401  (fixtures: stripe_api, fast_password_hashing)
    WEBHOOK_URL,
    checkout_session,
    fast_password_hashing,
    sign,
    stripe_api,
    stripe_error,
    stripe_event,
    stripe_list,
)

SESSIONS_PATH = "/v1/checkout/sessions"
CUSTOMERS_PATH = "/v1/customers"
CARD = {"id": "pm_card_alice", "object": "payment_method", "type": "card",
        "card": {"brand": "mastercard", "last4": "4444", "exp_month": 4, "exp_year": 2031}}


@pytest.fixture
def checkout(stripe_api):
    """Customers and Checkout Sessions, each idempotent on its key like Stripe's."""
    by_key = {}

    def create(kind, make):
        def answer(request):
            key = request.headers.get("idempotency-key")
            if key not in by_key:
                by_key[key] = make(request, len(by_key) + 1)
            return 200, by_key[key]
        return answer

    stripe_api.route("POST", CUSTOMERS_PATH, create("customer", lambda request, n: {
        "id": f"cus_test_{n}", "object": "customer", "email": request.form.get("email")}))
    stripe_api.route("POST", SESSIONS_PATH, create("session", lambda request, n: {
        "id": f"cs_test_{n}", "object": "checkout.session", "mode": request.form["mode"],
        "url": f"https://checkout.stripe.com/c/pay/cs_test_{n}"}))
    return stripe_api


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def deliver(event: dict):
    body = json.dumps(event)
    return Client(enforce_csrf_checks=True).post(WEBHOOK_URL, data=body, content_type="application/json",
                                                  HTTP_STRIPE_SIGNATURE=sign(body))


def setup_session(user, *, setup_intent="seti_alice") -> dict:
    return {
        "id": "cs_test_setup", "object": "checkout.session", "mode": "setup", "status": "complete",
        "payment_status": "no_payment_required", "setup_intent": setup_intent, "customer": "cus_test_1",
        "client_reference_id": str(user.pk), "metadata": {"user_id": str(user.pk), "purpose": "animeapi_save_card"},
    }


def test_a_top_up_can_save_the_card_on_one_customer_per_user(alice, charlie, checkout):
    client = signed_in(alice)
    for _ in range(2):
        response = client.post("/billing/topup/", {"amount": "10", "save_card": "1", "request_token": str(uuid.uuid4())})
        assert response.status_code == HTTPStatus.SEE_OTHER

    [customer_request] = checkout.requests_to("POST", CUSTOMERS_PATH)
    assert customer_request.form == {"email": "alice@example.com", "metadata[user_id]": str(alice.pk)}
    assert customer_request.headers["idempotency-key"] == f"customer:{alice.pk}"
    assert StripeCustomer.objects.get(user=alice).customer_id == "cus_test_1"
    sent = checkout.requests_to("POST", SESSIONS_PATH)[0].form
    assert sent["customer"] == "cus_test_1" and "customer_email" not in sent
    assert sent["payment_intent_data[setup_future_usage]"] == "off_session"
    assert sent["metadata[save_card]"] == sent["payment_intent_data[metadata][save_card]"] == "1"
    assert not StripeCustomer.objects.filter(user=charlie).exists()


def test_checkout_setup_mode_adds_a_card_without_paying(alice, charlie, checkout):
    response = signed_in(alice).post("/billing/card/", {"request_token": str(uuid.uuid4())})

    assert response.status_code == HTTPStatus.SEE_OTHER
    assert response["Location"] == "https://checkout.stripe.com/c/pay/cs_test_2"
    [sent] = checkout.requests_to("POST", SESSIONS_PATH)
    assert sent.form == {
        "mode": "setup", "customer": "cus_test_1", "payment_method_types[0]": "card",
        "client_reference_id": str(alice.pk),
        "metadata[user_id]": str(alice.pk), "metadata[purpose]": "animeapi_save_card",
        "setup_intent_data[metadata][user_id]": str(alice.pk),
        "setup_intent_data[metadata][purpose]": "animeapi_save_card",
        "success_url": "http://testserver/billing/?card=saving#card",
        "cancel_url": "http://testserver/billing/#card",
    }
    assert not LedgerEntry.objects.filter(user=alice, kind=LedgerEntry.Kind.TOPUP).exists()


def test_the_setup_webhook_saves_the_card_and_the_page_shows_brand_last4_and_expiry(alice, charlie, checkout):
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1")
    checkout.route("GET", "/v1/setup_intents/seti_alice",
                   {"id": "seti_alice", "object": "setup_intent", "status": "succeeded", "payment_method": CARD})

    response = deliver(stripe_event("checkout.session.completed", setup_session(alice)))

    assert response.status_code == HTTPStatus.OK
    [fetched] = checkout.requests_to("GET", "/v1/setup_intents/seti_alice")
    assert fetched.query == {"expand[0]": "payment_method"}
    customer = StripeCustomer.objects.get(user=alice)
    assert (customer.payment_method_id, customer.card_brand, customer.card_last4) == ("pm_card_alice", "mastercard", "4444")
    assert StripeEvent.objects.get().outcome == StripeEvent.Outcome.RECORDED
    assert "Mastercard ending 4444, expires 04/2031" in signed_in(alice).get("/billing/").content.decode()
    charlie_page = signed_in(charlie).get("/billing/").content.decode()
    assert "4444" not in charlie_page and "No card saved" in charlie_page


def test_a_setup_that_did_not_succeed_saves_nothing(alice, checkout):
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1")
    checkout.route("GET", "/v1/setup_intents/seti_alice",
                   {"id": "seti_alice", "object": "setup_intent", "status": "requires_action", "payment_method": CARD})

    deliver(stripe_event("checkout.session.completed", setup_session(alice)))

    assert not StripeCustomer.objects.get(user=alice).has_card


def test_a_paid_top_up_with_save_card_stores_the_card_from_its_payment_intent(alice, checkout):
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1")
    session = checkout_session(user=alice, session_id="cs_test_paid", payment_intent="pi_paid")
    session["metadata"]["save_card"] = "1"
    checkout.route("GET", "/v1/payment_intents/pi_paid",
                   {"id": "pi_paid", "object": "payment_intent", "status": "succeeded", "payment_method": CARD,
                    "latest_charge": None})

    deliver(stripe_event("checkout.session.completed", session))

    assert StripeCustomer.objects.get(user=alice).card_last4 == "4444"
    assert ledger.balance(user=alice) == Decimal("11")


def test_removing_the_card_detaches_it_and_disarms_auto_recharge(alice, charlie, checkout):
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1", payment_method_id="pm_card_alice",
                                  card_brand="visa", card_last4="4242", card_exp_month=1, card_exp_year=2030)
    client = signed_in(alice)
    client.post("/billing/auto-recharge/", {"enabled": "1", "threshold": "2", "amount": "10", "monthly_cap": "50"})
    assert Wallet.objects.get(user=alice).auto_recharge_below == Decimal("2")
    checkout.route("POST", "/v1/payment_methods/pm_card_alice/detach", lambda request: (500, stripe_error("down", "api_error")))

    client.post("/billing/card/remove/")
    assert StripeCustomer.objects.get(user=alice).has_card  # Stripe failed: nothing changed here

    checkout.route("POST", "/v1/payment_methods/pm_card_alice/detach", {"id": "pm_card_alice", "customer": None})
    response = client.post("/billing/card/remove/")

    assert response.status_code == HTTPStatus.SEE_OTHER
    customer = StripeCustomer.objects.get(user=alice)
    assert (customer.payment_method_id, customer.card_last4) == ("", "")
    assert Wallet.objects.get(user=alice).auto_recharge_below is None
    assert "No card saved" in client.get("/billing/").content.decode()


@pytest.mark.parametrize("form, field", [
    ({"threshold": "0.99", "amount": "10", "monthly_cap": "50"}, "threshold"),
    ({"threshold": "2", "amount": "4", "monthly_cap": "50"}, "amount"),
    ({"threshold": "2", "amount": "501", "monthly_cap": "1000"}, "amount"),
    ({"threshold": "2", "amount": "25", "monthly_cap": "20"}, "monthly_cap"),
    ({"threshold": "abc", "amount": "25", "monthly_cap": "50"}, "threshold"),
])
def test_auto_recharge_settings_refuse_nonsense(alice, form, field):
    response = signed_in(alice).post("/billing/auto-recharge/", {"enabled": "1", **form})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.context["auto_recharge_form"].errors[field]
    assert not AutoRecharge.objects.filter(user=alice).exists()


def test_settings_arm_the_wallet_only_with_a_card(alice, charlie):
    client = signed_in(alice)
    response = client.post("/billing/auto-recharge/", {"enabled": "1", "threshold": "1",
                                                       "amount": "5", "monthly_cap": "50"})
    assert response.status_code == HTTPStatus.SEE_OTHER
    assert AutoRecharge.objects.get(user=alice).enabled
    assert Wallet.objects.get(user=alice).auto_recharge_below is None  # no card yet
    assert "starts once you save a card" in client.get("/billing/").content.decode()
    assert Wallet.objects.get(user=charlie).auto_recharge_below is None


def test_settings_need_login_and_csrf(alice):
    assert Client().post("/billing/auto-recharge/", {}).status_code == HTTPStatus.FOUND
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/billing/auto-recharge/", {}).status_code == HTTPStatus.FORBIDDEN
    assert strict.post("/billing/card/remove/", {}).status_code == HTTPStatus.FORBIDDEN


def test_a_refunded_recharge_is_debited_like_a_top_up(alice, stripe_api):
    ledger.credit(user=alice, amount="5", kind=ledger.Kind.AUTO_RECHARGE, reference="pi_recharge")
    Recharge.objects.create(user=alice, amount=Decimal("5"), status=Recharge.Status.SUCCEEDED,
                            payment_intent_id="pi_recharge")
    refund = {"id": "re_recharge", "object": "refund", "amount": 500, "status": "succeeded", "charge": "ch_recharge"}
    charge = {"id": "ch_recharge", "object": "charge", "amount": 500, "currency": "usd", "payment_intent": "pi_recharge",
              "refunds": stripe_list("/v1/charges/ch_recharge/refunds", [refund])}

    deliver(stripe_event("charge.refunded", charge))
    deliver(stripe_event("charge.refunded", charge))

    [debit] = LedgerEntry.objects.filter(user=alice, kind=LedgerEntry.Kind.PAYMENT_REFUND)
    assert (debit.amount, debit.reference) == (Decimal("-5"), "re_recharge")
    assert ledger.balance(user=alice) == Decimal("1")


def test_admin_shows_saved_cards_as_brand_and_last4_only(alice, admin_client):
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1", payment_method_id="pm_secretish",
                                  card_brand="visa", card_last4="4242", card_exp_month=1, card_exp_year=2030)
    Recharge.objects.create(user=alice, amount=Decimal("5"), status=Recharge.Status.FAILED, failure_code="card_declined")

    cards_page = admin_client.get("/admin/billing/stripecustomer/").content.decode()
    detail = admin_client.get(f"/admin/billing/stripecustomer/{StripeCustomer.objects.get().pk}/change/").content.decode()
    recharges = admin_client.get("/admin/billing/recharge/").content.decode()

    assert "4242" in cards_page and "01/2030" in cards_page
    assert "pm_secretish" not in cards_page and "pm_secretish" not in detail
    assert "card_declined" in recharges


def test_a_recharge_stripe_never_answers_fails_after_the_last_retry_instead_of_blocking_the_next(
    alice, stripe_api, django_capture_on_commit_callbacks
):
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1", payment_method_id="pm_card_alice",
                                  card_brand="visa", card_last4="4242", card_exp_month=1, card_exp_year=2030)
    AutoRecharge.objects.create(user=alice, enabled=True, threshold=Decimal("2"), amount=Decimal("5"),
                                monthly_cap=Decimal("50"))
    recharge = Recharge.objects.create(user=alice, amount=Decimal("5"))
    # A transient answer every time (a 429 is one the library itself does not retry).
    stripe_api.route("POST", "/v1/payment_intents", lambda request: (
        429, stripe_error("Too many requests hit the API too quickly.", "rate_limit_error"))
    )

    # Eager mode runs each retry at once instead of after its countdown.
    with django_capture_on_commit_callbacks(execute=True):
        result = autorecharge.charge_auto_recharge.apply(kwargs={"recharge_id": recharge.pk})

    sent = stripe_api.requests_to("POST", "/v1/payment_intents")
    assert len(sent) == 1 + autorecharge.charge_auto_recharge.max_retries
    assert {r.headers["idempotency-key"] for r in sent} == {f"auto-recharge:{recharge.uuid}"}
    assert result.result == Recharge.Status.FAILED
    recharge.refresh_from_db()
    assert recharge.failure_code == "stripe_unavailable"
    assert not AutoRecharge.objects.get(user=alice).enabled
    assert [m.subject for m in mail.outbox] == ["Your AnimeAPI auto-recharge failed"]
    # Nothing in flight any more: a later recharge is not blocked.
    assert not Recharge.objects.filter(user=alice, status__in=Recharge.IN_FLIGHT).exists()


def test_a_charge_stripe_refuses_as_invalid_fails_at_once_and_switches_auto_recharge_off(
    alice, stripe_api, django_capture_on_commit_callbacks
):
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1", payment_method_id="pm_card_alice",
                                  card_brand="visa", card_last4="4242", card_exp_month=1, card_exp_year=2030)
    AutoRecharge.objects.create(user=alice, enabled=True, threshold=Decimal("2"), amount=Decimal("5"),
                                monthly_cap=Decimal("50"))
    recharge = Recharge.objects.create(user=alice, amount=Decimal("5"))
    stripe_api.route("POST", "/v1/payment_intents", lambda request: (400, stripe_error(
        "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, "
        "shared with a connected account without Customer attachment, or was detached from a Customer.")))

    with django_capture_on_commit_callbacks(execute=True):
        result = autorecharge.charge_auto_recharge.apply(kwargs={"recharge_id": recharge.pk})

    assert len(stripe_api.requests_to("POST", "/v1/payment_intents")) == 1  # no retry: it cannot help
    assert result.result == Recharge.Status.FAILED
    recharge.refresh_from_db()
    assert recharge.failure_code == "invalid_request" and "detached" in recharge.failure_message
    rule = AutoRecharge.objects.get(user=alice)
    assert not rule.enabled and "refused to charge the saved card" in rule.stopped_reason
    [message] = mail.outbox
    assert message.subject == "Your AnimeAPI auto-recharge failed" and "detached" in message.body
    assert not Recharge.objects.filter(user=alice, status__in=Recharge.IN_FLIGHT).exists()


def test_the_idempotency_key_is_the_rows_uuid_after_the_deployments_prefix(alice, stripe_api, settings):
    settings.STRIPE_IDEMPOTENCY_PREFIX = "staging-eu"
    StripeCustomer.objects.create(user=alice, customer_id="cus_test_1", payment_method_id="pm_card_alice",
                                  card_brand="visa", card_last4="4242", card_exp_month=1, card_exp_year=2030)
    stripe_api.route("POST", "/v1/payment_intents", lambda request: (200, {
        "id": f"pi_{request.form['metadata[recharge_id]']}", "object": "payment_intent", "status": "processing"}))
    first, second = (Recharge.objects.create(user=alice, amount=Decimal("5"), status=status)
                     for status in (Recharge.Status.FAILED, Recharge.Status.PENDING))

    autorecharge.charge_recharge(recharge_id=second.pk)

    [sent] = stripe_api.requests_to("POST", "/v1/payment_intents")
    second.refresh_from_db()
    assert sent.headers["idempotency-key"] == f"staging-eu:auto-recharge:{second.uuid}"
    # Ids repeat in another deployment's database; uuids do not.
    assert first.uuid != second.uuid and str(second.pk) not in sent.headers["idempotency-key"].split(":")
