import json
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.test import Client

from accounts.models import User
from billing import ledger, topups, webhooks
from billing.models import AccountFlag, StripeEvent, TopUp
from tests.test_stripe_standin import (  # noqa: F401  (fixtures: stripe_api, fast_password_hashing)
    checkout_session,
    fast_password_hashing,
    payment_intent_with_receipt,
    sign,
    stripe_api,
    stripe_event,
)

RECEIPT_URL = "https://pay.stripe.com/receipts/payment/alice"


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def pay(user, session_id, amount_cents):
    TopUp.objects.get_or_create(
        checkout_session_id=session_id, defaults={"user": user, "amount": Decimal(amount_cents) / 100}
    )
    session = checkout_session(user=user, session_id=session_id, amount_cents=amount_cents)
    return topups.book_paid_session(session=session)


@pytest.fixture
def alice_paid_topup(alice, stripe_api):
    payment_intent = payment_intent_with_receipt("pi_for_cs_alice_paid", RECEIPT_URL)
    stripe_api.route("GET", "/v1/payment_intents/pi_for_cs_alice_paid", payment_intent)
    pay(alice, "cs_alice_paid", 2500)
    return TopUp.objects.get(checkout_session_id="cs_alice_paid")


@pytest.fixture
def charlie_paid_topup(charlie, stripe_api):
    pay(charlie, "cs_charlie_secret", 4242)
    return TopUp.objects.get(checkout_session_id="cs_charlie_secret")


@pytest.mark.parametrize("url", ["/billing/", "/billing/topup/success/?session_id=cs_x", "/billing/topup/cancel/"])
def test_billing_pages_need_a_login(db, url):
    response = Client().get(url)

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/accounts/login/")


def test_billing_page_shows_balance_form_top_ups_and_ledger(alice, alice_paid_topup, charlie_paid_topup):
    response = logged_in(alice).get("/billing/")

    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "26.000 USD" in page
    for preset in ("5", "10", "25", "50"):
        assert f'name="amount" value="{preset}"' in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'min="5" max="500"' in page
    assert list(response.context["topups"]) == [alice_paid_topup]
    assert f'href="{RECEIPT_URL}"' in page
    assert "cs_alice_paid" in page and "Top-up" in page
    assert "test-seed:alice@example.com" in page
    # Nothing of charlie's: not his top-up, his amount, his references.
    assert "cs_charlie_secret" not in page
    assert "42.42" not in page
    assert "charlie" not in page


def test_negative_balance_is_explained(alice, alice_paid_topup):
    ledger.debit(user=alice, amount="30", kind=ledger.Kind.PAYMENT_REFUND, reference="re_all")

    page = logged_in(alice).get("/billing/").content.decode()

    assert "-4.000 USD" in page
    assert "Your balance is negative" in page


def test_ledger_is_paginated_25_per_page(alice, charlie):
    for n in range(29):
        ledger.credit(user=alice, amount="0.01", kind=ledger.Kind.ADJUSTMENT, reference=f"page-test:{n}")
    client = logged_in(alice)

    first = client.get("/billing/")
    second = client.get("/billing/?page=2")
    beyond = client.get("/billing/?page=99")

    assert len(first.context["entries"]) == 25
    assert first.context["entries"].paginator.count == 30
    assert "Page 1 of 2" in first.content.decode()
    assert 'href="?page=2"' in first.content.decode()
    assert len(second.context["entries"]) == 5
    # Newest first: the seed credit is the oldest entry, on the last page.
    assert "test-seed:alice@example.com" in second.content.decode()
    assert "test-seed:alice@example.com" not in first.content.decode()
    assert beyond.context["entries"].number == 2
    assert "charlie" not in first.content.decode() + second.content.decode()


def test_success_page_says_confirming_until_the_webhook_books_it(alice, stripe_api):
    TopUp.objects.create(user=alice, checkout_session_id="cs_alice_wait", amount=Decimal("10"))
    client = logged_in(alice)

    before = client.get("/billing/topup/success/?session_id=cs_alice_wait")

    assert before.status_code == HTTPStatus.OK
    assert "Your payment of $10.00 is being confirmed" in before.content.decode()
    assert ledger.balance(user=alice) == Decimal("1")

    body = json.dumps(
        stripe_event("checkout.session.completed", checkout_session(user=alice, session_id="cs_alice_wait"))
    )
    webhooks.receive_event(payload=body.encode(), signature=sign(body))
    after = client.get("/billing/topup/success/?session_id=cs_alice_wait")

    assert "$10.00 has been added to your balance" in after.content.decode()
    assert "11.000 USD" in after.content.decode()


@pytest.mark.parametrize("status, text", [("failed", "did not go through"), ("expired", "expired before it was paid")])
def test_success_page_tells_a_failed_or_expired_payment(alice, status, text):
    TopUp.objects.create(user=alice, checkout_session_id="cs_alice_x", amount=Decimal("10"), status=status)

    page = logged_in(alice).get("/billing/topup/success/?session_id=cs_alice_x").content.decode()

    assert text in page


def test_success_page_shows_nothing_of_another_users_payment(alice, charlie_paid_topup):
    response = logged_in(alice).get("/billing/topup/success/?session_id=cs_charlie_secret")

    assert response.status_code == HTTPStatus.OK
    assert response.context["topup"] is None
    page = response.content.decode()
    assert "We have no record of this payment on your account" in page
    assert "42.42" not in page
    assert "cs_charlie_secret" not in page


def test_success_page_without_a_session_id(alice):
    response = logged_in(alice).get("/billing/topup/success/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["topup"] is None


def test_cancel_page_says_nothing_was_charged(alice):
    response = logged_in(alice).get("/billing/topup/cancel/")

    assert response.status_code == HTTPStatus.OK
    assert "Nothing was charged" in response.content.decode()
    assert "1.000 USD" in response.content.decode()


@pytest.fixture
def superuser_client(db):
    admin = User.objects.create_superuser(email="admin@example.com", password="admin password 1")
    return logged_in(admin)


def test_admin_lists_stripe_events_read_only(superuser_client, alice, alice_paid_topup):
    body = json.dumps(stripe_event("customer.created", {"id": "cus_1", "object": "customer"}))
    event = webhooks.receive_event(payload=body.encode(), signature=sign(body))

    listing = superuser_client.get("/admin/billing/stripeevent/?outcome=ignored&q=customer")
    detail = superuser_client.get(f"/admin/billing/stripeevent/{event.pk}/change/")

    assert listing.status_code == HTTPStatus.OK
    assert event.stripe_event_id in listing.content.decode()
    assert detail.status_code == HTTPStatus.OK
    assert "cus_1" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    assert superuser_client.get("/admin/billing/stripeevent/add/").status_code == HTTPStatus.FORBIDDEN
    assert superuser_client.post(f"/admin/billing/stripeevent/{event.pk}/delete/").status_code == HTTPStatus.FORBIDDEN
    assert StripeEvent.objects.filter(pk=event.pk).exists()


def test_admin_shows_flagged_accounts_and_top_ups(superuser_client, alice, alice_paid_topup):
    AccountFlag.objects.create(
        user=alice, reason=AccountFlag.Reason.DISPUTE, reference="dp_1", detail="fraudulent on ch_1"
    )

    flags = superuser_client.get("/admin/billing/accountflag/?closed_at__isempty=1")
    top_ups = superuser_client.get("/admin/billing/topup/?q=alice")

    assert flags.status_code == HTTPStatus.OK
    assert "alice@example.com" in flags.content.decode() and "dp_1" in flags.content.decode()
    assert top_ups.status_code == HTTPStatus.OK
    assert "cs_alice_paid" in top_ups.content.decode()
