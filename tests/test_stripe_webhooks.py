import json
import threading
import time
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.db import connection
from django.test import Client

from billing import ledger
from billing.models import AccountFlag, LedgerEntry, StripeEvent, TopUp
from tests.conftest import make_user
from tests.test_stripe_standin import (  # noqa: F401  (fixtures: stripe_api, fast_password_hashing)
    WEBHOOK_URL,
    checkout_session,
    fast_password_hashing,
    payment_intent_with_receipt,
    sign,
    stripe_api,
    stripe_error,
    stripe_event,
    stripe_list,
)

Kind = LedgerEntry.Kind
Outcome = StripeEvent.Outcome
SESSION_ID = "cs_test_alice_10"
PAYMENT_INTENT_ID = "pi_test_alice_10"
CHARGE_ID = "ch_test_alice_10"
RECEIPT_URL = "https://pay.stripe.com/receipts/payment/alice_10"


def deliver(payload, *, signature=None, client=None):
    """POST to the real webhook URL as Stripe does, with a CSRF-enforcing client."""
    body = payload if isinstance(payload, str) else json.dumps(payload)
    client = client or Client(enforce_csrf_checks=True)
    return client.post(
        WEBHOOK_URL, data=body, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body) if signature is None else signature,
    )


def alice_paid_session(alice, **overrides):
    return checkout_session(
        user=alice, session_id=SESSION_ID, amount_cents=1000, payment_intent=PAYMENT_INTENT_ID, **overrides
    )


def charge(*, refunds=None, amount_refunded=0):
    charge = {
        "id": CHARGE_ID,
        "object": "charge",
        "amount": 1000,
        "amount_refunded": amount_refunded,
        "currency": "usd",
        "payment_intent": PAYMENT_INTENT_ID,
        "receipt_url": RECEIPT_URL,
        "refunded": amount_refunded == 1000,
    }
    if refunds is not None:
        charge["refunds"] = stripe_list(f"/v1/charges/{CHARGE_ID}/refunds", refunds)
    return charge


def refund(refund_id, amount_cents, status="succeeded"):
    return {"id": refund_id, "object": "refund", "amount": amount_cents, "charge": CHARGE_ID,
            "currency": "usd", "payment_intent": PAYMENT_INTENT_ID, "status": status}


def dispute(dispute_id="dp_test_alice_10", *, status="needs_response", amount_cents=1000):
    return {"id": dispute_id, "object": "dispute", "amount": amount_cents, "charge": CHARGE_ID,
            "currency": "usd", "payment_intent": PAYMENT_INTENT_ID, "reason": "fraudulent", "status": status}


def kinds(user):
    return sorted(LedgerEntry.objects.filter(user=user).values_list("kind", flat=True))


def events():
    return sorted(StripeEvent.objects.values_list("type", "outcome"))


PAID_EVENT = ("checkout.session.completed", Outcome.BOOKED)


def assert_balance(user, expected):
    assert ledger.balance(user=user) == Decimal(expected) == ledger.ledger_sum(user=user)


@pytest.fixture
def alice_topup(alice, stripe_api):
    """Alice started a $10 top-up: the row start_topup stores after Stripe answers."""
    stripe_api.route("GET", f"/v1/payment_intents/{PAYMENT_INTENT_ID}",
                     payment_intent_with_receipt(PAYMENT_INTENT_ID, RECEIPT_URL))
    return TopUp.objects.create(user=alice, checkout_session_id=SESSION_ID, amount=Decimal("10"))


@pytest.fixture
def alice_paid(alice, charlie, alice_topup):
    """Alice's $10 top-up, booked through the webhook: balance $11."""
    assert deliver(stripe_event("checkout.session.completed", alice_paid_session(alice))).status_code == HTTPStatus.OK
    assert_balance(alice, "11")
    return alice_topup


def test_paid_session_credits_the_balance_and_stores_the_receipt(alice, charlie, alice_topup, stripe_api):
    event = stripe_event("checkout.session.completed", alice_paid_session(alice))

    response = deliver(event)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"received": True, "outcome": "booked"}
    assert_balance(alice, "11")
    assert_balance(charlie, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT, Kind.TOPUP]
    entry = LedgerEntry.objects.get(reference=SESSION_ID)
    assert (entry.user, entry.kind, entry.amount) == (alice, Kind.TOPUP, Decimal("10"))
    alice_topup.refresh_from_db()
    assert alice_topup.status == TopUp.Status.PAID
    assert alice_topup.payment_intent_id == PAYMENT_INTENT_ID
    assert alice_topup.receipt_url == RECEIPT_URL
    assert alice_topup.paid_at is not None
    [fetch] = stripe_api.requests_to("GET", f"/v1/payment_intents/{PAYMENT_INTENT_ID}")
    assert fetch.query == {"expand[0]": "latest_charge"}
    stored = StripeEvent.objects.get()
    assert (stored.stripe_event_id, stored.type, stored.outcome) == (event["id"], event["type"], Outcome.BOOKED)
    assert stored.payload == event
    assert stored.processed_at is not None


@pytest.mark.parametrize(
    "make_signature",
    [
        pytest.param(lambda body: sign(body, secret="whsec_someone_else"), id="wrong-secret"),
        pytest.param(lambda body: sign(body, timestamp=int(time.time()) - 301), id="stale-timestamp"),
        pytest.param(lambda body: "", id="no-signature"),
        pytest.param(lambda body: "t=not-a-time,v1=abc", id="garbled-header"),
        pytest.param(lambda body: sign(body).replace("v1=", "v0="), id="wrong-scheme"),
    ],
)
def test_badly_signed_events_are_refused(alice, alice_topup, make_signature):
    body = json.dumps(stripe_event("checkout.session.completed", alice_paid_session(alice)))

    response = deliver(body, signature=make_signature(body))

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"error": "Invalid or expired Stripe signature", "code": "INVALID_SIGNATURE"}
    assert_balance(alice, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT]
    assert not StripeEvent.objects.exists()
    alice_topup.refresh_from_db()
    assert alice_topup.status == TopUp.Status.PENDING


def test_tampered_body_is_refused(alice, alice_topup):
    body = json.dumps(stripe_event("checkout.session.completed", alice_paid_session(alice)))
    signature = sign(body)
    tampered = body.replace('"amount_total": 1000', '"amount_total": 100000')
    assert tampered != body

    response = deliver(tampered, signature=signature)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "INVALID_SIGNATURE"
    assert_balance(alice, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT]
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(
    "body",
    ["not json at all", "[]", '"event"', '{"hello": "world"}', '{"object": "event", "id": "evt_1", "type": "x"}'],
)
def test_signed_body_that_is_not_an_event_is_refused(alice, stripe_api, body):
    response = deliver(body)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"error": "Body is not a Stripe event", "code": "INVALID_PAYLOAD"}
    assert_balance(alice, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT]
    assert not StripeEvent.objects.exists()


def test_replayed_event_is_booked_once(alice, charlie, alice_topup):
    event = stripe_event("checkout.session.completed", alice_paid_session(alice))

    first, second, third = deliver(event), deliver(event), deliver(event)

    assert [r.status_code for r in (first, second, third)] == [HTTPStatus.OK] * 3
    assert [r.json()["outcome"] for r in (first, second, third)] == ["booked"] * 3
    assert_balance(alice, "11")
    assert_balance(charlie, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT, Kind.TOPUP]
    stored = StripeEvent.objects.get()
    assert (stored.outcome, stored.delivery_count) == (Outcome.BOOKED, 3)


def test_same_session_under_two_event_ids_is_booked_once(alice, alice_topup):
    completed = stripe_event("checkout.session.completed", alice_paid_session(alice))
    succeeded = stripe_event("checkout.session.async_payment_succeeded", alice_paid_session(alice))

    assert deliver(completed).json()["outcome"] == "booked"
    assert deliver(succeeded).json()["outcome"] == "already_booked"

    assert_balance(alice, "11")
    assert kinds(alice) == [Kind.ADJUSTMENT, Kind.TOPUP]
    assert dict(StripeEvent.objects.values_list("stripe_event_id", "outcome")) == {
        completed["id"]: Outcome.BOOKED,
        succeeded["id"]: Outcome.ALREADY_BOOKED,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.parametrize("same_event_id", [True, False], ids=["same-event", "same-session-new-event-ids"])
def test_concurrent_deliveries_book_once(stripe_api, same_event_id):
    alice = make_user("alice@example.com", balance="1")
    charlie = make_user("charlie@example.com", balance="1")
    TopUp.objects.create(user=alice, checkout_session_id=SESSION_ID, amount=Decimal("10"))
    workers = 4
    events = [stripe_event("checkout.session.completed", alice_paid_session(alice)) for _ in range(workers)]
    if same_event_id:
        events = [events[0]] * workers
    start = threading.Barrier(workers)
    statuses = []

    def post(event):
        try:
            start.wait()
            statuses.append(deliver(event).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [HTTPStatus.OK] * workers
    assert_balance(alice, "11")
    assert_balance(charlie, "1")
    assert LedgerEntry.objects.filter(kind=Kind.TOPUP).count() == 1
    outcomes = list(StripeEvent.objects.values_list("outcome", flat=True))
    if same_event_id:
        assert outcomes == [Outcome.BOOKED]
        assert StripeEvent.objects.get().delivery_count == workers
    else:
        assert sorted(outcomes) == sorted([Outcome.BOOKED] + [Outcome.ALREADY_BOOKED] * (workers - 1))
    assert TopUp.objects.get().status == TopUp.Status.PAID


def test_unpaid_session_waits_for_async_payment_succeeded(alice, charlie, alice_topup):
    completed = stripe_event("checkout.session.completed", alice_paid_session(alice, payment_status="unpaid"))

    assert deliver(completed).json()["outcome"] == "recorded"

    assert_balance(alice, "1")
    alice_topup.refresh_from_db()
    assert alice_topup.status == TopUp.Status.PROCESSING

    succeeded = stripe_event("checkout.session.async_payment_succeeded", alice_paid_session(alice))
    assert deliver(succeeded).json()["outcome"] == "booked"

    assert_balance(alice, "11")
    assert_balance(charlie, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT, Kind.TOPUP]
    alice_topup.refresh_from_db()
    assert alice_topup.status == TopUp.Status.PAID
    assert dict(StripeEvent.objects.values_list("stripe_event_id", "outcome")) == {
        completed["id"]: Outcome.RECORDED,
        succeeded["id"]: Outcome.BOOKED,
    }


@pytest.mark.parametrize(
    "event_type, status",
    [
        ("checkout.session.async_payment_failed", TopUp.Status.FAILED),
        ("checkout.session.expired", TopUp.Status.EXPIRED),
    ],
)
def test_failed_or_expired_session_is_recorded_without_credit(alice, alice_topup, event_type, status):
    session = alice_paid_session(alice, payment_status="unpaid")

    response = deliver(stripe_event(event_type, session))

    assert response.status_code == HTTPStatus.OK
    assert response.json()["outcome"] == "recorded"
    assert_balance(alice, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT]
    alice_topup.refresh_from_db()
    assert alice_topup.status == status
    assert events() == [(event_type, Outcome.RECORDED)]


def test_late_expired_event_does_not_undo_a_payment(alice, alice_paid):
    deliver(stripe_event("checkout.session.expired", alice_paid_session(alice)))

    alice_paid.refresh_from_db()
    assert alice_paid.status == TopUp.Status.PAID
    assert_balance(alice, "11")
    assert kinds(alice) == [Kind.ADJUSTMENT, Kind.TOPUP]
    assert events() == [PAID_EVENT, ("checkout.session.expired", Outcome.RECORDED)]


def test_paid_session_we_never_stored_is_booked_from_its_metadata(alice, charlie, stripe_api):
    session = checkout_session(user=charlie, session_id="cs_test_lost_row", amount_cents=2500)

    assert deliver(stripe_event("checkout.session.completed", session)).json()["outcome"] == "booked"

    assert_balance(charlie, "26")
    assert_balance(alice, "1")
    assert kinds(charlie) == [Kind.ADJUSTMENT, Kind.TOPUP]
    assert events() == [PAID_EVENT]
    topup = TopUp.objects.get(checkout_session_id="cs_test_lost_row")
    assert (topup.user, topup.amount, topup.status) == (charlie, Decimal("25"), TopUp.Status.PAID)


def test_session_that_is_not_a_top_up_is_ignored(alice, stripe_api):
    session = checkout_session(user=alice, session_id="cs_test_other_product", ours=False)

    response = deliver(stripe_event("checkout.session.completed", session))

    assert response.status_code == HTTPStatus.OK
    assert response.json()["outcome"] == "ignored"
    assert_balance(alice, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT]
    assert events() == [("checkout.session.completed", Outcome.IGNORED)]
    assert not TopUp.objects.exists()


def test_refund_after_spend_takes_the_balance_negative(alice, charlie, alice_paid):
    ledger.reserve(user=alice, amount="10.5", reference="gen:spent")
    assert_balance(alice, "0.5")

    event = stripe_event("charge.refunded", charge(refunds=[refund("re_full", 1000)], amount_refunded=1000))
    response = deliver(event)

    assert response.json()["outcome"] == "booked"
    assert_balance(alice, "-9.5")
    assert_balance(charlie, "1")
    entry = LedgerEntry.objects.get(reference="re_full")
    assert (entry.kind, entry.amount) == (Kind.PAYMENT_REFUND, Decimal("-10"))
    with pytest.raises(ledger.InsufficientBalance):
        ledger.reserve(user=alice, amount="0.009", reference="gen:after-refund")
    assert_balance(alice, "-9.5")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.CHARGE, Kind.PAYMENT_REFUND])
    assert events() == [("charge.refunded", Outcome.BOOKED), PAID_EVENT]


def test_partial_refunds_in_sequence_each_debit_their_own_amount(alice, alice_paid):
    first = stripe_event("charge.refunded", charge(refunds=[refund("re_1", 300)], amount_refunded=300))
    second = stripe_event(
        "charge.refunded", charge(refunds=[refund("re_2", 200), refund("re_1", 300)], amount_refunded=500)
    )

    assert deliver(first).json()["outcome"] == "booked"
    assert_balance(alice, "8")
    assert deliver(second).json()["outcome"] == "booked"
    assert_balance(alice, "6")
    assert deliver(second).json()["outcome"] == "booked"  # a replay: the stored outcome, nothing new

    assert_balance(alice, "6")
    assert sorted(LedgerEntry.objects.filter(kind=Kind.PAYMENT_REFUND).values_list("reference", "amount")) == [
        ("re_1", Decimal("-3")), ("re_2", Decimal("-2")),
    ]
    assert events() == [("charge.refunded", Outcome.BOOKED)] * 2 + [PAID_EVENT]


def test_refunds_are_fetched_when_the_event_does_not_carry_them(alice, alice_paid, stripe_api):
    refunds = [refund("re_a", 250), refund("re_b", 100, "failed")]
    stripe_api.route("GET", "/v1/refunds", stripe_list("/v1/refunds", refunds))

    response = deliver(stripe_event("charge.refunded", charge(amount_refunded=250)))

    assert response.json()["outcome"] == "booked"
    assert_balance(alice, "8.5")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.PAYMENT_REFUND])
    assert not LedgerEntry.objects.filter(reference="re_b").exists()
    assert events() == [("charge.refunded", Outcome.BOOKED), PAID_EVENT]
    [listing] = stripe_api.requests_to("GET", "/v1/refunds")
    assert listing.query["charge"] == CHARGE_ID


def test_stripe_failure_answers_500_and_the_retry_books(alice, alice_paid, stripe_api):
    stripe_api.route("GET", "/v1/refunds", lambda request: (400, stripe_error("temporarily unavailable")))
    event = stripe_event("charge.refunded", charge(amount_refunded=1000))

    response = deliver(event)

    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response.json() == {"error": "The event could not be processed", "code": "PROCESSING_FAILED"}
    stored = StripeEvent.objects.get(stripe_event_id=event["id"])
    assert stored.outcome == Outcome.FAILED
    assert "temporarily unavailable" in stored.detail
    assert_balance(alice, "11")

    stripe_api.route("GET", "/v1/refunds", stripe_list("/v1/refunds", [refund("re_later", 1000)]))
    assert deliver(event).json()["outcome"] == "booked"

    assert_balance(alice, "1")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.PAYMENT_REFUND])
    stored.refresh_from_db()
    assert (stored.outcome, stored.delivery_count) == (Outcome.BOOKED, 2)


def test_refund_of_a_charge_that_is_not_a_top_up_is_ignored(alice, charlie, stripe_api):
    stripe_api.route("GET", "/v1/checkout/sessions", stripe_list("/v1/checkout/sessions", []))
    foreign = charge(refunds=[refund("re_foreign", 1000)]) | {"payment_intent": "pi_someone_elses"}

    response = deliver(stripe_event("charge.refunded", foreign))

    assert response.json()["outcome"] == "ignored"
    assert_balance(alice, "1")
    assert_balance(charlie, "1")
    assert kinds(alice) == kinds(charlie) == [Kind.ADJUSTMENT]
    assert events() == [("charge.refunded", Outcome.IGNORED)]
    [lookup] = stripe_api.requests_to("GET", "/v1/checkout/sessions")
    assert lookup.query["payment_intent"] == "pi_someone_elses"


def test_dispute_debits_and_flags_then_a_win_credits_back(alice, charlie, alice_paid):
    opened = stripe_event("charge.dispute.created", dispute())

    assert deliver(opened).json()["outcome"] == "booked"

    assert_balance(alice, "1")
    flag = AccountFlag.objects.get()
    assert (flag.user, flag.reason, flag.reference) == (alice, AccountFlag.Reason.DISPUTE, "dp_test_alice_10")
    assert flag.closed_at is None

    closed = stripe_event("charge.dispute.closed", dispute(status="won"))
    assert deliver(closed).json()["outcome"] == "booked"
    assert deliver(stripe_event("charge.dispute.closed", dispute(status="won"))).json()["outcome"] == "already_booked"

    assert_balance(alice, "11")
    assert_balance(charlie, "1")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.DISPUTE, Kind.DISPUTE_WON])
    assert events() == [
        ("charge.dispute.closed", Outcome.ALREADY_BOOKED),
        ("charge.dispute.closed", Outcome.BOOKED),
        ("charge.dispute.created", Outcome.BOOKED),
        PAID_EVENT,
    ]
    flag.refresh_from_db()
    assert flag.closed_at is not None
    assert flag.resolution == "won"


def test_lost_dispute_keeps_the_debit(alice, alice_paid):
    deliver(stripe_event("charge.dispute.created", dispute()))

    response = deliver(stripe_event("charge.dispute.closed", dispute(status="lost")))

    assert response.json()["outcome"] == "recorded"
    assert_balance(alice, "1")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.DISPUTE])
    assert events() == [
        ("charge.dispute.closed", Outcome.RECORDED), ("charge.dispute.created", Outcome.BOOKED), PAID_EVENT,
    ]
    assert AccountFlag.objects.get().resolution == "lost"


def test_dispute_closed_before_created_still_nets_to_zero(alice, alice_paid):
    assert deliver(stripe_event("charge.dispute.closed", dispute(status="won"))).json()["outcome"] == "booked"
    assert_balance(alice, "11")

    assert deliver(stripe_event("charge.dispute.created", dispute())).json()["outcome"] == "already_booked"

    assert_balance(alice, "11")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.DISPUTE, Kind.DISPUTE_WON])
    assert events() == [
        ("charge.dispute.closed", Outcome.BOOKED), ("charge.dispute.created", Outcome.ALREADY_BOOKED), PAID_EVENT,
    ]


def test_inquiry_flags_the_account_without_taking_money(alice, alice_paid):
    response = deliver(stripe_event("charge.dispute.created", dispute(status="warning_needs_response")))

    assert response.json()["outcome"] == "recorded"
    assert_balance(alice, "11")
    assert kinds(alice) == [Kind.ADJUSTMENT, Kind.TOPUP]
    assert events() == [("charge.dispute.created", Outcome.RECORDED), PAID_EVENT]
    assert AccountFlag.objects.filter(user=alice).count() == 1


def test_inquiry_that_escalates_is_debited_once(alice, alice_paid):
    deliver(stripe_event("charge.dispute.created", dispute(status="warning_needs_response")))

    withdrawn = stripe_event("charge.dispute.funds_withdrawn", dispute(status="needs_response"))
    assert deliver(withdrawn).json()["outcome"] == "booked"

    assert_balance(alice, "1")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.DISPUTE])
    assert events() == [
        ("charge.dispute.created", Outcome.RECORDED), ("charge.dispute.funds_withdrawn", Outcome.BOOKED), PAID_EVENT,
    ]
    assert AccountFlag.objects.filter(user=alice).count() == 1


def test_funds_withdrawn_after_created_is_not_debited_twice(alice, alice_paid):
    deliver(stripe_event("charge.dispute.created", dispute()))

    response = deliver(stripe_event("charge.dispute.funds_withdrawn", dispute()))

    assert response.json()["outcome"] == "already_booked"
    assert_balance(alice, "1")
    assert kinds(alice) == sorted([Kind.ADJUSTMENT, Kind.TOPUP, Kind.DISPUTE])


def test_unknown_event_is_stored_and_ignored(alice, stripe_api):
    event = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})

    response = deliver(event)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"received": True, "outcome": "ignored"}
    assert events() == [("customer.created", Outcome.IGNORED)]
    assert_balance(alice, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT]


def test_webhook_answers_only_post(stripe_api):
    response = Client().get(WEBHOOK_URL)

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json() == {"error": "Method not allowed", "code": "METHOD_NOT_ALLOWED"}
    assert response["Allow"] == "POST"


def test_webhook_without_a_secret_configured_refuses_everything(alice, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""

    response = deliver(stripe_event("checkout.session.completed", alice_paid_session(alice)))

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert not StripeEvent.objects.exists()
    assert_balance(alice, "1")
    assert kinds(alice) == [Kind.ADJUSTMENT]
