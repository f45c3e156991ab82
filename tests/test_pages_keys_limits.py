"""The API keys page's settings: test keys, per-key limits, and the webhook signing secret."""

import datetime
import re
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.test import Client
from django.utils import timezone

from accounts.apikeys import create_api_key, revoke_api_key
from accounts.apikeys import set_key_limits
from accounts.models import ApiKey

from .conftest import error_of, generate

TEST_KEY = re.compile(r"ank_test_[0-9A-Za-z]{42}")
NEXT_YEAR = timezone.now().year + 1
NO_LIMITS = {"spend_cap_daily_usd": "", "spend_cap_total_usd": "", "expires_at": "", "allowed_networks": ""}


def text(response):
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def key(alice, alice_key):
    return ApiKey.objects.get(user=alice)


def save_limits(client, key, **limits):
    return client.post(f"/keys/{key.pk}/limits/", {**NO_LIMITS, **limits})


def test_a_test_key_is_created_from_the_page(alice_client, alice):
    response = alice_client.post("/keys/", {"name": "CI", "test": "on"})
    assert response.status_code == HTTPStatus.OK
    [full_key] = set(TEST_KEY.findall(response.content.decode()))
    assert "Your new test key “CI”" in text(response)
    key = ApiKey.objects.get(user=alice)
    assert (key.is_test, key.prefix) == (True, full_key[:15])

    listed = text(alice_client.get("/keys/"))
    assert '<span class="badge">test</span>' in listed
    assert generate(Client(), full_key).status_code == HTTPStatus.OK


def test_the_create_form_says_what_a_test_key_is(alice_client):
    page = text(alice_client.get("/keys/"))
    assert 'type="checkbox" name="test"' in page
    assert "Starts with ank_test_. Free: it answers with preview images, charges nothing and has a daily quota" in page


def test_each_limit_is_stored_and_summarised(alice_client, key):
    response = save_limits(
        alice_client, key, spend_cap_daily_usd="1", spend_cap_total_usd="5.5",
        expires_at=f"{NEXT_YEAR}-12-01T10:30", allowed_networks="203.0.113.7, 10.1.2.3/8",
    )
    assert response.status_code == HTTPStatus.FOUND and response["Location"] == "/keys/"
    key.refresh_from_db()
    assert key.spend_cap_daily_usd == Decimal(1)
    assert key.spend_cap_total_usd == Decimal("5.5")
    assert key.expires_at == datetime.datetime(NEXT_YEAR, 12, 1, 10, 30, tzinfo=datetime.UTC)
    assert key.allowed_networks == "203.0.113.7/32, 10.0.0.0/8"

    listed = text(alice_client.get("/keys/"))
    assert "Limits saved for “alice&#x27;s key”." in listed
    assert f"$1.00/day · $5.50 total ($0.00 spent) · expires Dec 1, {NEXT_YEAR} · 2 IP networks" in listed

    form = text(alice_client.get(f"/keys/{key.pk}/limits/"))
    assert f'value="{NEXT_YEAR}-12-01T10:30"' in form  # shown back in UTC, as it was typed
    assert 'value="203.0.113.7/32, 10.0.0.0/8"' in form
    assert 'value="1.00"' in form and 'value="5.50"' in form  # not the column's 6 decimals


def test_one_network_is_named_and_empty_fields_clear_the_limits(alice_client, key):
    save_limits(alice_client, key, allowed_networks="2001:db8::/32")
    assert "2001:db8::/32 only" in text(alice_client.get("/keys/"))

    save_limits(alice_client, key)
    key.refresh_from_db()
    assert (key.spend_cap_daily_usd, key.spend_cap_total_usd, key.expires_at, key.allowed_networks) == (
        None, None, None, "")
    assert '<td class="limits-cell"><span class="muted">None</span></td>' in text(alice_client.get("/keys/"))


def test_the_form_shows_what_the_key_spent(alice_client, key, alice_key):
    assert generate(Client(), alice_key).status_code == HTTPStatus.OK
    page = text(alice_client.get(f"/keys/{key.pk}/limits/"))
    assert "Spent today: <strong>$0.009</strong>" in page
    assert "Spent so far: <strong>$0.009</strong>" in page


def test_bad_networks_are_refused_next_to_the_field(alice_client, key):
    response = save_limits(alice_client, key, allowed_networks="10.0.0.0/8, 300.1.1.1", spend_cap_daily_usd="2")
    assert response.status_code == HTTPStatus.OK
    page = text(response)
    error = "&#x27;300.1.1.1&#x27; is not an IP address or network"
    assert f'<ul class="errors" id="id_allowed_networks_error"><li>{error}</li></ul>' in page
    assert 'aria-invalid="true" aria-describedby="id_allowed_networks_helptext id_allowed_networks_error"' in page
    key.refresh_from_db()
    assert (key.allowed_networks, key.spend_cap_daily_usd) == ("", None)  # nothing of the form is saved


@pytest.mark.parametrize("field", ["spend_cap_daily_usd", "spend_cap_total_usd"])
def test_negative_caps_are_refused(alice_client, key, field):
    response = save_limits(alice_client, key, **{field: "-0.01"})
    assert response.status_code == HTTPStatus.OK
    assert "Ensure this value is greater than or equal to 0." in text(response)
    key.refresh_from_db()
    assert getattr(key, field) is None


def test_a_past_expiry_is_refused_unless_it_was_already_set(alice_client, key):
    response = save_limits(alice_client, key, expires_at="2020-01-01T00:00")
    assert "Pick a time in the future. To stop the key now, revoke it." in text(response)
    key.refresh_from_db()
    assert key.expires_at is None

    # An admin set an expiry that has passed since: saving other limits keeps it as it is.
    past = datetime.datetime(2020, 1, 1, 8, 15, 42, tzinfo=datetime.UTC)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=past)
    assert "expired Jan 1, 2020" in text(alice_client.get("/keys/"))
    form = text(alice_client.get(f"/keys/{key.pk}/limits/"))
    assert 'value="2020-01-01T08:15"' in form
    response = save_limits(alice_client, key, expires_at="2020-01-01T08:15", spend_cap_daily_usd="3")
    assert response.status_code == HTTPStatus.FOUND
    key.refresh_from_db()
    assert (key.expires_at, key.spend_cap_daily_usd) == (past, Decimal(3))


def test_a_test_key_has_no_spend_caps_to_set(alice_client, alice):
    key, _ = create_api_key(user=alice, name="CI", test=True)
    page = text(alice_client.get(f"/keys/{key.pk}/limits/"))
    assert "Test keys charge nothing, so they have no spend caps." in page
    assert "spend_cap" not in page
    response = save_limits(alice_client, key, spend_cap_total_usd="1", allowed_networks="192.0.2.0/24")
    assert response.status_code == HTTPStatus.FOUND
    key.refresh_from_db()
    assert (key.spend_cap_total_usd, key.allowed_networks) == (None, "192.0.2.0/24")


def test_saving_limits_keeps_spend_counted_meanwhile(key):
    """The page's write touches the limit columns only, so a charge counted after the form loaded the key survives."""
    ApiKey.objects.filter(pk=key.pk).update(spent_total_usd=Decimal("0.5"))
    assert set_key_limits(api_key=key, spend_cap_total_usd=Decimal(2))  # `key` still says 0 spent
    key.refresh_from_db()
    assert (key.spent_total_usd, key.spend_cap_total_usd) == (Decimal("0.5"), Decimal(2))


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_users_key_is_404(alice_client, charlie, charlie_key, method):
    key = ApiKey.objects.get(user=charlie)
    response = getattr(alice_client, method)(f"/keys/{key.pk}/limits/", {**NO_LIMITS, "spend_cap_total_usd": "0"})
    assert response.status_code == HTTPStatus.NOT_FOUND
    key.refresh_from_db()
    assert key.spend_cap_total_usd is None


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_revoked_key_is_404(alice_client, key, method):
    revoke_api_key(api_key=key)
    response = getattr(alice_client, method)(f"/keys/{key.pk}/limits/", {**NO_LIMITS, "spend_cap_total_usd": "0"})
    assert response.status_code == HTTPStatus.NOT_FOUND
    key.refresh_from_db()
    assert key.spend_cap_total_usd is None


def test_logged_out_visitors_are_sent_to_log_in(client, key, alice):
    secret = alice.webhook_secret
    for method, path in [("get", f"/keys/{key.pk}/limits/"), ("post", f"/keys/{key.pk}/limits/"),
                         ("get", "/keys/webhook-secret/rotate/"), ("post", "/keys/webhook-secret/rotate/")]:
        response = getattr(client, method)(path)
        assert response.status_code == HTTPStatus.FOUND
        assert response["Location"].startswith("/accounts/login/?next=")
    alice.refresh_from_db()
    assert alice.webhook_secret == secret


def test_posts_need_the_csrf_token(alice, key):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    secret = alice.webhook_secret
    response = client.post(f"/keys/{key.pk}/limits/", {**NO_LIMITS, "spend_cap_total_usd": "0"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert client.post("/keys/webhook-secret/rotate/").status_code == HTTPStatus.FORBIDDEN
    key.refresh_from_db()
    alice.refresh_from_db()
    assert (key.spend_cap_total_usd, alice.webhook_secret) == (None, secret)

    client.get(f"/keys/{key.pk}/limits/")
    token = client.cookies["csrftoken"].value
    response = client.post(f"/keys/{key.pk}/limits/", {**NO_LIMITS, "csrfmiddlewaretoken": token})
    assert response.status_code == HTTPStatus.FOUND


def test_the_webhook_secret_is_masked_with_reveal_and_copy(alice_client, alice):
    response = alice_client.get("/keys/")
    page = text(response)
    assert f'<input id="webhook-secret" type="password" value="{alice.webhook_secret}" readonly' in page
    assert 'data-reveal="#webhook-secret"' in page and 'data-copy="#webhook-secret"' in page
    assert "AnimeAPI-Signature: t=&lt;unix seconds&gt;,v1=&lt;hex&gt;" in page and "5 minutes" in page
    assert "no-store" in response["Cache-Control"]


def test_rotating_the_secret_asks_first_then_replaces_it(alice_client, alice, charlie):
    old, charlies = alice.webhook_secret, charlie.webhook_secret
    confirm = alice_client.get("/keys/webhook-secret/rotate/")
    assert "Rotate your webhook secret?" in text(confirm)
    alice.refresh_from_db()
    assert alice.webhook_secret == old  # a GET changes nothing

    response = alice_client.post("/keys/webhook-secret/rotate/", follow=True)
    assert response.redirect_chain == [("/keys/#webhooks", HTTPStatus.FOUND)]
    alice.refresh_from_db()
    charlie.refresh_from_db()
    assert alice.webhook_secret.startswith("whsec_") and alice.webhook_secret != old
    assert charlie.webhook_secret == charlies
    page = text(response)
    assert "Webhook secret rotated." in page
    assert alice.webhook_secret in page and old not in page


def test_a_total_cap_set_on_the_page_is_enforced_by_the_api(alice_client, key, alice_key):
    assert save_limits(alice_client, key, spend_cap_total_usd="0.009").status_code == HTTPStatus.FOUND

    assert generate(Client(), alice_key, {"prompt": "anime girl"}).status_code == HTTPStatus.OK
    refused = generate(Client(), alice_key, {"prompt": "anime girl"})
    assert refused.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert error_of(refused)["code"] == "KEY_SPEND_CAP_REACHED"
    assert "$0.009 total ($0.009 spent)" in text(alice_client.get("/keys/"))


def test_networks_set_on_the_page_are_enforced_by_the_api(alice_client, key, alice_key):
    save_limits(alice_client, key, allowed_networks="203.0.113.0/24")
    refused = generate(Client(), alice_key, REMOTE_ADDR="198.51.100.9")
    assert (refused.status_code, error_of(refused)["code"]) == (HTTPStatus.FORBIDDEN, "IP_NOT_ALLOWED")
    assert generate(Client(), alice_key, REMOTE_ADDR="203.0.113.40").status_code == HTTPStatus.OK
