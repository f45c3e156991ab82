"""Auto-recharge against localstripe, a stateful Stripe fake written by others, run as a real
server on a free port: our code talks to it through the `stripe` library (STRIPE_API_BASE), and
it sends its own signed webhooks to our real webhook URL on pytest-django's live server.

localstripe has no Checkout: a card is saved here the way Checkout's setup mode leaves it (a
PaymentMethod attached to our Customer, a confirmed SetupIntent in localstripe) followed by the
signed checkout.session.completed event Stripe would send; our handler then reads the
SetupIntent back from localstripe. It also ignores Idempotency-Key, so tests/localstripe_server.py
adds Stripe's documented idempotency (see there).
"""

import json
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import kombu.exceptions
import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.apikeys import create_api_key
from billing import alerts, autorecharge, cards, ledger, stale_recharges, webhooks
from billing import stripe as billing_stripe
from billing.models import AutoRecharge, LedgerEntry, Recharge, StripeCustomer, StripeEvent, TopUp, Wallet
from tests.conftest import generate, make_user
from tests.test_stripe_standin import WEBHOOK_SECRET, WEBHOOK_URL, sign, stripe_event

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_KEY = "sk_test_localstripe"
LAUNCHER = Path(__file__).with_name("localstripe_server.py")
GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"  # attaches fine, every charge is declined
AUTHENTICATING_CARD = "4000002760003184"  # "always authenticate": every charge needs its holder
WEBHOOK_WAIT_S = 15  # localstripe waits 1 s before sending each event


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalStripe:
    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, auth=(SECRET_KEY, ""), timeout=10)

    def post(self, path: str, data: dict) -> dict:
        response = self.http.post(path, data=data)
        assert response.status_code == 200, response.text
        return response.json()

    def payment_intents(self) -> list[dict]:
        return self.http.get("/v1/payment_intents", params={"limit": 100}).json()["data"]


@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("localstripe") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(LAUNCHER), str(port)], stdout=log, stderr=subprocess.STDOUT)
    server = LocalStripe(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, f"localstripe exited at start: {log_path.read_text()}"
        try:
            server.http.get("/v1/customers")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "localstripe did not answer in 30 s"
            time.sleep(0.1)
    yield server
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def localstripe(localstripe_server, live_server, settings):
    """An empty localstripe that signs its webhooks with our secret and sends them to our live server."""
    localstripe_server.http.delete("/_config/data").raise_for_status()
    events = {f"events[{i}]": name for i, name in enumerate(webhooks.HANDLERS)}
    response = localstripe_server.http.post(
        "/_config/webhooks/animeapi",
        data={"url": live_server.url + WEBHOOK_URL, "secret": WEBHOOK_SECRET, **events},
    )
    response.raise_for_status()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = localstripe_server.url
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 1000
    yield localstripe_server
    # Events still on their way belong to this test only: send them nowhere (localstripe cannot
    # unregister a webhook; port 9 refuses the connection).
    localstripe_server.http.post(
        "/_config/webhooks/animeapi", data={"url": "http://127.0.0.1:9/", "secret": WEBHOOK_SECRET}
    ).raise_for_status()


def save_card_as_checkout_would(localstripe: LocalStripe, user, number: str, live_server) -> None:
    """What Checkout's setup mode does in Stripe, then the event it sends us."""
    customer = cards.customer_of(user=user)  # our code creates the Customer in localstripe
    method = localstripe.post("/v1/payment_methods", {
        "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2030", "card[cvc]": "123",
    })
    localstripe.post(f"/v1/payment_methods/{method['id']}/attach", {"customer": customer.customer_id})
    intent = localstripe.post("/v1/setup_intents", {"customer": customer.customer_id, "usage": "off_session"})
    intent = localstripe.post(f"/v1/setup_intents/{intent['id']}/confirm", {"payment_method": method["id"]})
    if intent["status"] == "requires_action":  # the holder passes 3-D Secure inside Checkout
        intent = localstripe.post(f"/v1/setup_intents/{intent['id']}/confirm", {})
    assert intent["status"] == "succeeded"
    session = {
        "id": f"cs_test_setup_{user.pk}", "object": "checkout.session", "mode": "setup", "status": "complete",
        "payment_status": "no_payment_required", "customer": customer.customer_id, "setup_intent": intent["id"],
        "client_reference_id": str(user.pk),
        "metadata": {"user_id": str(user.pk), "purpose": billing_stripe.CARD_SETUP_PURPOSE},
    }
    body = json.dumps(stripe_event("checkout.session.completed", session))
    response = httpx.post(live_server.url + WEBHOOK_URL, content=body,
                          headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)})
    assert response.status_code == 200, response.text


def enable_auto_recharge(user, *, threshold="1", amount="5", monthly_cap="50") -> Client:
    client = Client()
    client.force_login(user)
    response = client.post("/billing/auto-recharge/", {
        "enabled": "1", "threshold": threshold, "amount": amount, "monthly_cap": monthly_cap,
    })
    assert response.status_code == 303
    return client


def wait_for(condition, what: str):
    deadline = time.monotonic() + WEBHOOK_WAIT_S
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def auto_recharge_credits(user) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(user=user, kind=LedgerEntry.Kind.AUTO_RECHARGE))


def recharge_events(payment_intent_id: str, event_type: str) -> list[StripeEvent]:
    return [event for event in StripeEvent.objects.filter(type=event_type)
            if event.payload["data"]["object"]["id"] == payment_intent_id]


@pytest.fixture
def alice_with_card(localstripe, live_server):
    user = make_user("alice@example.com", balance="1.02")
    save_card_as_checkout_would(localstripe, user, GOOD_CARD, live_server)
    return user


def test_the_saved_card_is_read_back_from_stripe(alice_with_card):
    customer = StripeCustomer.objects.get(user=alice_with_card)
    assert customer.customer_id.startswith("cus_") and customer.payment_method_id.startswith("pm_")
    assert (customer.card_brand, customer.card_last4, customer.card_exp_month, customer.card_exp_year) == (
        "visa", "4242", 12, 2030,
    )
    client = Client()
    client.force_login(alice_with_card)
    assert "Visa ending 4242, expires 12/2030" in client.get("/billing/").content.decode()


def test_spending_across_the_threshold_charges_the_card_once_and_the_webhook_credits_once(
    localstripe, alice_with_card, live_server
):
    charlie = make_user("charlie@example.com", balance="1.02")
    _, key = create_api_key(user=alice_with_card)
    _, charlie_key = create_api_key(user=charlie)
    enable_auto_recharge(alice_with_card, threshold="1", amount="5")
    api = Client()

    for _ in range(2):  # 1.020 -> 1.011 -> 1.002: still above $1
        assert generate(api, key).status_code == 200
    assert localstripe.payment_intents() == []
    for _ in range(3):  # charlie has no auto-recharge: he crosses $1 and nothing is charged
        assert generate(api, charlie_key).status_code == 200
    assert generate(api, key).status_code == 200  # -> 0.993: crosses
    assert generate(api, key).status_code == 200  # -> 0.984: already below, no second recharge

    [credit] = wait_for(lambda: auto_recharge_credits(alice_with_card), "the auto-recharge credit")
    [intent] = localstripe.payment_intents()
    assert (intent["amount"], intent["currency"], intent["status"]) == (500, "usd", "succeeded")
    assert intent["customer"] == StripeCustomer.objects.get(user=alice_with_card).customer_id
    recharge = Recharge.objects.get(user=alice_with_card)
    assert intent["metadata"] == {"purpose": "animeapi_auto_recharge", "user_id": str(alice_with_card.pk),
                                  "recharge_id": str(recharge.pk)}
    assert (credit.amount, credit.reference) == (Decimal("5"), intent["id"])
    assert (recharge.status, recharge.payment_intent_id, recharge.amount) == (
        Recharge.Status.SUCCEEDED, intent["id"], Decimal("5"),
    )
    [event] = recharge_events(intent["id"], "payment_intent.succeeded")
    assert event.outcome == StripeEvent.Outcome.BOOKED
    expected = Decimal("1.02") - 4 * Decimal("0.009") + 5
    assert ledger.balance(user=alice_with_card) == expected == ledger.ledger_sum(user=alice_with_card)
    assert ledger.balance(user=charlie) == Decimal("1.02") - 3 * Decimal("0.009")
    assert not Recharge.objects.filter(user=charlie).exists()

    # Stripe redelivers the same event, and sends the same intent under a new event id: nothing moves.
    replayed = json.dumps(event.payload)
    renamed = json.dumps({**event.payload, "id": event.payload["id"] + "_again"})
    for body in (replayed, renamed):
        response = httpx.post(live_server.url + WEBHOOK_URL, content=body,
                              headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)})
        assert response.status_code == 200
    event.refresh_from_db()
    assert event.delivery_count == 2 and event.outcome == StripeEvent.Outcome.BOOKED
    assert StripeEvent.objects.get(stripe_event_id=event.payload["id"] + "_again").outcome == (
        StripeEvent.Outcome.ALREADY_BOOKED
    )
    assert auto_recharge_credits(alice_with_card) == [credit]
    assert ledger.balance(user=alice_with_card) == expected
    assert len(localstripe.payment_intents()) == 1


def test_20_concurrent_charges_crossing_the_threshold_create_one_payment_intent(localstripe, alice_with_card):
    enable_auto_recharge(alice_with_card, threshold="1", amount="5")
    ledger.credit(user=alice_with_card, amount="0.03", kind=ledger.Kind.ADJUSTMENT, reference="seed-1.05")
    start = threading.Barrier(20)
    errors = []

    def charge_and_start(n):
        start.wait()
        try:
            ledger.reserve(user=alice_with_card, amount="0.009", reference=f"crowd-{n}")
            # As if every charge had seen a crossing: the lock and the one-in-flight rule still hold.
            autorecharge.start_auto_recharge.delay(user_id=alice_with_card.pk)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=charge_and_start, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    wait_for(lambda: auto_recharge_credits(alice_with_card), "the auto-recharge credit")
    assert len(localstripe.payment_intents()) == 1
    assert Recharge.objects.filter(user=alice_with_card).count() == 1
    assert ledger.balance(user=alice_with_card) == Decimal("1.05") - 20 * Decimal("0.009") + 5
    assert ledger.balance(user=alice_with_card) == ledger.ledger_sum(user=alice_with_card)


@pytest.mark.parametrize("number, code, webhook", [
    (DECLINING_CARD, "card_declined", True),
    (AUTHENTICATING_CARD, "authentication_required", False),
])
def test_a_card_that_fails_turns_auto_recharge_off_with_one_email_a_banner_and_no_credit(
    localstripe, live_server, number, code, webhook
):
    user = make_user("dana@example.com", balance="1.02")
    save_card_as_checkout_would(localstripe, user, number, live_server)
    client = enable_auto_recharge(user, threshold="1", amount="5")
    mail.outbox.clear()

    ledger.reserve(user=user, amount="0.03", reference="spend-across")

    recharge = Recharge.objects.get(user=user)
    assert (recharge.status, recharge.failure_code) == (Recharge.Status.FAILED, code)
    [intent] = localstripe.payment_intents()
    if webhook:  # localstripe reports a declined charge as payment_intent.payment_failed too
        [event] = wait_for(lambda: recharge_events(intent["id"], "payment_intent.payment_failed"), "the failure event")
        assert event.outcome == StripeEvent.Outcome.RECORDED and "already recorded" in event.detail
    rule = AutoRecharge.objects.get(user=user)
    assert not rule.enabled and rule.stopped_reason
    assert Wallet.objects.get(user=user).auto_recharge_below is None
    [message] = mail.outbox
    assert message.to == [user.email] and message.subject == "Your AnimeAPI auto-recharge failed"
    assert "/billing/#auto-recharge" in message.body
    page = client.get("/billing/").content.decode()
    assert "Auto-recharge of $5.00 failed and is now off" in page
    assert auto_recharge_credits(user) == []
    assert ledger.balance(user=user) == Decimal("0.99")

    # Off means off: crossing again charges nothing.
    ledger.credit(user=user, amount="1", kind=ledger.Kind.ADJUSTMENT, reference="back-up")
    ledger.reserve(user=user, amount="1.5", reference="down-again")
    assert Recharge.objects.filter(user=user).count() == 1
    assert len(localstripe.payment_intents()) == 1
    # Saving the settings (here: leaving it off) clears the banner.
    response = client.post("/billing/auto-recharge/", {"threshold": "1", "amount": "5", "monthly_cap": "50"})
    assert response.status_code == 303
    assert "failed and is now off" not in client.get("/billing/").content.decode()
    assert len(mail.outbox) == 1 and len(localstripe.payment_intents()) == 1


def test_the_monthly_cap_stops_the_next_recharge_and_a_new_month_allows_it(localstripe, alice_with_card):
    enable_auto_recharge(alice_with_card, threshold="1", amount="5", monthly_cap="5")

    ledger.reserve(user=alice_with_card, amount="0.03", reference="first-crossing")  # 1.02 -> 0.99
    wait_for(lambda: auto_recharge_credits(alice_with_card), "the first credit")  # -> 5.99
    ledger.reserve(user=alice_with_card, amount="5", reference="second-crossing")  # -> 0.99

    capped = Recharge.objects.get(user=alice_with_card, status=Recharge.Status.CAPPED)
    assert "$5.00 of the $5.00 monthly cap" in capped.failure_message
    assert len(localstripe.payment_intents()) == 1
    assert ledger.balance(user=alice_with_card) == Decimal("0.99")

    # A month later (the attempts this month are dated into the last one), the next crossing charges.
    Recharge.objects.filter(user=alice_with_card).update(created_at=Recharge.objects.first().created_at
                                                         - timedelta(days=32))
    ledger.credit(user=alice_with_card, amount="0.02", kind=ledger.Kind.ADJUSTMENT, reference="back-above")
    ledger.reserve(user=alice_with_card, amount="0.02", reference="third-crossing")
    wait_for(lambda: len(auto_recharge_credits(alice_with_card)) == 2, "the second credit")
    assert len(localstripe.payment_intents()) == 2
    assert ledger.balance(user=alice_with_card) == Decimal("5.99")


def test_a_retried_task_after_a_crash_between_stripes_answer_and_our_commit_charges_once(
    localstripe, alice_with_card, monkeypatch
):
    enable_auto_recharge(alice_with_card, threshold="1", amount="5")
    real_record_answer = autorecharge.record_answer
    answers = []

    def crash_once(*, recharge_id, answer):
        answers.append(answer)
        if len(answers) == 1:
            raise SystemError("worker killed after Stripe answered")
        real_record_answer(recharge_id=recharge_id, answer=answer)

    monkeypatch.setattr(autorecharge, "record_answer", crash_once)

    ledger.reserve(user=alice_with_card, amount="0.03", reference="crossing")  # the task runs and "crashes"
    recharge = Recharge.objects.get(user=alice_with_card)
    assert recharge.status == Recharge.Status.PENDING and recharge.payment_intent_id == ""
    # Celery redelivers it (acks_late, reject_on_worker_lost) before Stripe's webhook comes back.
    retried = autorecharge.charge_auto_recharge.apply(kwargs={"recharge_id": recharge.pk})
    assert retried.successful() and retried.result == Recharge.Status.PROCESSING

    assert len(answers) == 2 and answers[0] == answers[1]
    wait_for(lambda: auto_recharge_credits(alice_with_card), "the credit")
    [intent] = localstripe.payment_intents()
    recharge.refresh_from_db()
    assert (recharge.status, recharge.payment_intent_id) == (Recharge.Status.SUCCEEDED, intent["id"])
    assert ledger.balance(user=alice_with_card) == Decimal("5.99")
    assert autorecharge.idempotency_key_of(recharge) == f"auto-recharge:{recharge.uuid}"


def deliver_signed(live_server, event_type: str, obj: dict) -> None:
    body = json.dumps(stripe_event(event_type, obj))
    response = httpx.post(live_server.url + WEBHOOK_URL, content=body,
                          headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)})
    assert response.status_code == 200, response.text


def test_refunds_disputes_and_corrections_never_recharge_and_a_dispute_turns_it_off_once(
    localstripe, alice_with_card, live_server
):
    client = enable_auto_recharge(alice_with_card, threshold="1", amount="5")
    TopUp.objects.create(user=alice_with_card, checkout_session_id="cs_paid", payment_intent_id="pi_topup",
                         amount=Decimal("5"), status=TopUp.Status.PAID)
    mail.outbox.clear()

    refund = {"id": "re_topup", "object": "refund", "amount": 50, "status": "succeeded", "charge": "ch_topup"}
    deliver_signed(live_server, "charge.refunded", {
        "id": "ch_topup", "object": "charge", "amount": 500, "currency": "usd", "payment_intent": "pi_topup",
        "refunds": {"object": "list", "url": "/v1/charges/ch_topup/refunds", "has_more": False, "data": [refund]},
    })  # 1.02 -> 0.52: below $1, but the card holder asked for money back
    ledger.adjust(user=alice_with_card, amount="-0.02", reference="correction", memo="an admin's correction")
    assert ledger.balance(user=alice_with_card) == Decimal("0.50")
    assert Wallet.objects.get(user=alice_with_card).auto_recharge_below == Decimal("1")  # still armed

    dispute = {"id": "dp_topup", "object": "dispute", "amount": 100, "currency": "usd", "charge": "ch_topup",
               "payment_intent": "pi_topup", "reason": "fraudulent", "status": "needs_response"}
    deliver_signed(live_server, "charge.dispute.created", dispute)
    deliver_signed(live_server, "charge.dispute.funds_withdrawn", dispute)

    assert ledger.balance(user=alice_with_card) == Decimal("-0.50")
    assert not Recharge.objects.filter(user=alice_with_card).exists()
    rule = AutoRecharge.objects.get(user=alice_with_card)
    assert not rule.enabled and "disputed (dp_topup)" in rule.stopped_reason
    assert Wallet.objects.get(user=alice_with_card).auto_recharge_below is None
    # (The low-balance alerts mail on their own: only ours is counted here.)
    [message] = [m for m in mail.outbox if "auto-recharge" in m.subject]
    assert message.to == [alice_with_card.email] and message.subject == "Your AnimeAPI auto-recharge is off"
    assert "dp_topup" in message.body and "/billing/#auto-recharge" in message.body
    assert "a payment to us is disputed" in client.get("/billing/").content.decode()
    time.sleep(1.5)  # localstripe would have sent any payment's event by now
    assert localstripe.payment_intents() == []


def test_a_recharge_that_leaves_the_balance_below_the_threshold_is_followed_by_another(localstripe, live_server):
    bob = make_user("bob@example.com", balance="0.50")
    save_card_as_checkout_would(localstripe, bob, GOOD_CARD, live_server)
    assert localstripe.payment_intents() == []

    # Saved while already below: one recharge now (0.50 -> 5.50), still below $10: a second (-> 10.50).
    enable_auto_recharge(bob, threshold="10", amount="5", monthly_cap="50")

    wait_for(lambda: len(auto_recharge_credits(bob)) == 2, "the second credit")
    assert ledger.balance(user=bob) == Decimal("10.50") == ledger.ledger_sum(user=bob)
    assert [r.status for r in Recharge.objects.filter(user=bob)] == [Recharge.Status.SUCCEEDED] * 2
    # Above the threshold now: spending that stays above it starts nothing, and nothing else was charged.
    _, key = create_api_key(user=bob)
    assert generate(Client(), key).status_code == 200
    time.sleep(1.5)
    assert len(localstripe.payment_intents()) == 2 and Recharge.objects.filter(user=bob).count() == 2


def test_the_monthly_cap_ends_a_chain_of_recharges_below_the_threshold(localstripe, live_server):
    bob = make_user("bob@example.com", balance="0.50")
    save_card_as_checkout_would(localstripe, bob, GOOD_CARD, live_server)

    enable_auto_recharge(bob, threshold="20", amount="5", monthly_cap="10")

    wait_for(lambda: Recharge.objects.filter(user=bob, status=Recharge.Status.CAPPED).exists(), "the capped attempt")
    assert len(auto_recharge_credits(bob)) == 2 and len(localstripe.payment_intents()) == 2
    assert ledger.balance(user=bob) == Decimal("10.50")
    # Charges below the threshold do not each start a task: only crossings and credits do.
    ledger.reserve(user=bob, amount="0.009", reference="below-already")
    assert Recharge.objects.filter(user=bob).count() == 3


def test_storing_a_card_while_below_the_threshold_starts_a_recharge(localstripe, live_server):
    bob = make_user("bob@example.com", balance="0.50")
    enable_auto_recharge(bob, threshold="1", amount="5")  # no card yet: not armed, nothing charged
    assert Wallet.objects.get(user=bob).auto_recharge_below is None

    save_card_as_checkout_would(localstripe, bob, GOOD_CARD, live_server)

    [credit] = wait_for(lambda: auto_recharge_credits(bob), "the credit")
    assert credit.amount == Decimal("5") and len(localstripe.payment_intents()) == 1
    assert ledger.balance(user=bob) == Decimal("5.50")


def send_webhooks_nowhere(localstripe: LocalStripe) -> None:
    """As if our webhook endpoint were down: localstripe's events go to a closed port."""
    localstripe.http.post(
        "/_config/webhooks/animeapi", data={"url": "http://127.0.0.1:9/", "secret": WEBHOOK_SECRET}
    ).raise_for_status()


def age(recharge: Recharge, minutes: int) -> None:
    Recharge.objects.filter(pk=recharge.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))


def test_a_stale_recharge_whose_payment_succeeded_is_credited_once_from_stripe(localstripe, alice_with_card, settings):
    settings.AUTO_RECHARGE_STALE_MINUTES = 30
    enable_auto_recharge(alice_with_card, threshold="1", amount="5")
    send_webhooks_nowhere(localstripe)
    ledger.reserve(user=alice_with_card, amount="0.03", reference="crossing")  # charged, its webhook lost
    recharge = Recharge.objects.get(user=alice_with_card)
    assert recharge.status == Recharge.Status.PROCESSING

    age(recharge, 29)  # young: left alone
    assert stale_recharges.settle_stale_recharges_task.apply().result == {"succeeded": [], "failed": [], "left": []}
    age(recharge, 31)
    result = stale_recharges.settle_stale_recharges_task.apply().result
    assert result == {"succeeded": [recharge.pk], "failed": [], "left": []}

    recharge.refresh_from_db()
    [credit] = auto_recharge_credits(alice_with_card)
    assert (recharge.status, credit.reference, credit.amount) == (Recharge.Status.SUCCEEDED, recharge.payment_intent_id,
                                                                  Decimal("5"))
    assert stale_recharges.settle_stale_recharges_task.apply().result["succeeded"] == []
    assert auto_recharge_credits(alice_with_card) == [credit]
    assert ledger.balance(user=alice_with_card) == Decimal("5.99") == ledger.ledger_sum(user=alice_with_card)
    # Not blocked any more: the next crossing charges again.
    ledger.reserve(user=alice_with_card, amount="5", reference="next-crossing")
    assert Recharge.objects.filter(user=alice_with_card).count() == 2 and len(localstripe.payment_intents()) == 2


def test_stale_recharges_that_failed_or_never_reached_stripe_are_settled_and_unblock_the_next(
    localstripe, alice_with_card, live_server
):
    enable_auto_recharge(alice_with_card, threshold="1", amount="5")
    customer = StripeCustomer.objects.get(user=alice_with_card)
    intent = localstripe.post("/v1/payment_intents", {
        "amount": "500", "currency": "usd", "customer": customer.customer_id,
        "payment_method": customer.payment_method_id,
    })
    canceled = localstripe.post(f"/v1/payment_intents/{intent['id']}/cancel", {})
    assert canceled["status"] == "canceled"
    alices = Recharge.objects.create(user=alice_with_card, amount=Decimal("5"), status=Recharge.Status.PROCESSING,
                                     payment_intent_id=intent["id"])
    # Bob's attempt was recorded but its task never ran (a lost message): no PaymentIntent at all.
    bob = make_user("bob@example.com", balance="0.50")
    bobs = Recharge.objects.create(user=bob, amount=Decimal("5"))
    save_card_as_checkout_would(localstripe, bob, GOOD_CARD, live_server)
    enable_auto_recharge(bob, threshold="1", amount="5")  # armed below the threshold: blocked by the stale one
    assert Recharge.objects.filter(user=bob).count() == 1
    for recharge in (alices, bobs):
        age(recharge, 120)
    mail.outbox.clear()

    report = stale_recharges.settle_stale_recharges()

    assert sorted(report.failed) == sorted([alices.pk, bobs.pk]) and report.succeeded == []
    alices.refresh_from_db()
    bobs.refresh_from_db()
    assert (alices.status, alices.failure_code) == (Recharge.Status.FAILED, "canceled")
    assert not AutoRecharge.objects.get(user=alice_with_card).enabled  # like a declined card: off, one e-mail
    assert [m.to for m in mail.outbox] == [[alice_with_card.email]]
    assert (bobs.status, bobs.failure_code) == (Recharge.Status.FAILED, "no_answer")
    # Bob's card is no worse for it: still on, and still below, so the next attempt went out and was paid.
    assert AutoRecharge.objects.get(user=bob).enabled
    wait_for(lambda: auto_recharge_credits(bob), "bob's credit")
    assert ledger.balance(user=bob) == Decimal("5.50")
    assert auto_recharge_credits(alice_with_card) == []


def test_a_broker_that_refuses_the_task_never_turns_a_committed_image_charge_into_an_error(
    localstripe, alice_with_card, monkeypatch
):
    enable_auto_recharge(alice_with_card, threshold="1", amount="5")
    alerts.set_threshold(user=alice_with_card, threshold=Decimal("1"))
    ledger.reserve(user=alice_with_card, amount="0.015", reference="to-1.005")
    _, key = create_api_key(user=alice_with_card)

    def broker_down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(autorecharge.start_auto_recharge, "delay", broker_down)
    monkeypatch.setattr(alerts.send_balance_alert, "delay", broker_down)

    response = generate(Client(), key)  # 1.005 -> 0.996: crosses both the alert and auto-recharge

    assert response.status_code == 200, response.content
    assert ledger.balance(user=alice_with_card) == Decimal("0.996") == ledger.ledger_sum(user=alice_with_card)
    assert not Recharge.objects.filter(user=alice_with_card).exists()
