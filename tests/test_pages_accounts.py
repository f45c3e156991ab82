"""Signing up, verifying the e-mail, logging in and out, passwords: allauth in our own pages."""

import re
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.core import mail

from accounts.models import User
from accounts.signup import grant_signup_credit
from billing import ledger
from billing.models import LedgerEntry

PASSWORD = "a long and unusual passphrase"


@pytest.fixture(autouse=True)
def _no_allauth_rate_limits(settings):
    """allauth counts e-mails and failed logins in the shared cache, which outlives a test run."""
    settings.ACCOUNT_RATE_LIMITS = False


def text(response):
    return re.sub(r"\s+", " ", response.content.decode())


def sign_up(client, email="new@example.com"):
    return client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})


def confirmation_link(message):
    return re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^/\s]+/)", message.body).group(1)


@pytest.mark.parametrize("url", ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"])
def test_account_pages_use_our_look(client, db, url):
    response = client.get(url)
    assert response.status_code == HTTPStatus.OK
    page = text(response)
    assert '<link rel="stylesheet" href="/static/css/app.css">' in page
    assert 'class="card auth-card"' in page
    assert "AnimeAPI</title>" in page
    assert "style=" not in page
    # Every visible input has a label (a placeholder is not one).
    for field_id in re.findall(r'<input type="(?:email|password|text)"[^>]* id="([^"]+)"', page):
        assert f'for="{field_id}"' in page


@pytest.mark.parametrize("url", ["/accounts/password/change/", "/accounts/email/"])
def test_account_settings_pages_use_our_look(client, alice, url):
    client.force_login(alice)
    page = text(client.get(url))
    assert 'class="card settings-card"' in page
    assert 'aria-label="Account settings"' in page


def test_sign_up_verify_then_log_in(client, db):
    response = sign_up(client)
    assert response.status_code == HTTPStatus.FOUND
    assert "Check your inbox" in text(client.get(response["Location"]))
    user = User.objects.get(email="new@example.com")
    assert ledger.balance(user=user) == Decimal(0)  # SIGNUP_CREDIT_USD is 0 by default
    assert not LedgerEntry.objects.filter(user=user).exists()

    # Unverified: logging in only sends the link again.
    client.post("/accounts/logout/")
    client.post("/accounts/login/", {"login": "new@example.com", "password": PASSWORD})
    assert not client.get("/dashboard/").wsgi_request.user.is_authenticated
    assert len(mail.outbox) == 2

    link = confirmation_link(mail.outbox[0])
    assert "Hello from AnimeAPI!" in mail.outbox[0].body
    confirm = client.get(link)
    assert confirm.status_code == HTTPStatus.OK
    client.post(link)
    response = client.post("/accounts/login/", {"login": "new@example.com", "password": PASSWORD})
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/dashboard/"
    assert "new@example.com" in text(client.get("/dashboard/"))


def test_wrong_password_is_said_clearly(client, alice):
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": "wrong"})
    assert response.status_code == HTTPStatus.OK
    assert 'class="notice error" role="alert"' in text(response)
    assert "not correct" in text(response)


def test_signup_errors_are_shown_next_to_the_field(client, db):
    response = client.post("/accounts/signup/", {"email": "x@example.com", "password1": "short", "password2": "other"})
    page = text(response)
    assert 'class="errors"' in page
    assert not User.objects.filter(email="x@example.com").exists()


def test_log_out_is_a_post_from_the_menu(client, alice):
    client.force_login(alice)
    page = text(client.get("/dashboard/"))
    assert '<form method="post" action="/accounts/logout/">' in page
    client.post("/accounts/logout/")
    assert client.get("/dashboard/").status_code == HTTPStatus.FOUND


def test_signup_credit_is_granted_once_through_the_ledger(client, db, settings):
    settings.SIGNUP_CREDIT_USD = Decimal("0.50")
    sign_up(client, "trial@example.com")
    user = User.objects.get(email="trial@example.com")
    assert ledger.balance(user=user) == Decimal("0.50")
    entry = LedgerEntry.objects.get(user=user)
    assert (entry.kind, entry.reference) == (ledger.Kind.SIGNUP_CREDIT, f"signup-credit:{user.pk}")
    assert grant_signup_credit(user=user) is False
    assert ledger.balance(user=user) == Decimal("0.50")


def test_password_reset_sends_a_link_that_works(client, alice):
    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    [message] = mail.outbox
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+/)", message.body).group(1)
    form = client.get(link, follow=True)  # allauth moves the token from the URL into the session
    [(set_password_url, _)] = form.redirect_chain
    assert 'class="card auth-card"' in text(form)
    response = client.post(set_password_url, {"password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == HTTPStatus.FOUND
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
