"""The API keys page: a key is shown once, listed by prefix, revoked with confirmation, per user."""

import re
from http import HTTPStatus

import pytest
from django.test import Client

from accounts.apikeys import create_api_key
from accounts.models import ApiKey

from .conftest import generate

KEY = re.compile(r"ank_[0-9A-Za-z]{42}")


def text(response):
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def test_new_key_is_shown_once_and_works(alice_client, alice):
    response = alice_client.post("/keys/", {"name": "Production server"})
    assert response.status_code == HTTPStatus.OK
    [full_key] = set(KEY.findall(response.content.decode()))
    assert "no-store" in response["Cache-Control"]
    assert 'data-copy="#new-key-value"' in text(response)
    key = ApiKey.objects.get(user=alice)
    assert (key.name, key.prefix) == ("Production server", full_key[:10])
    assert full_key not in key.hashed_key

    listed = text(alice_client.get("/keys/"))
    assert full_key not in listed
    assert f"<code>{key.prefix}…</code>" in listed and "Production server" in listed

    assert generate(Client(), full_key).status_code == HTTPStatus.OK
    assert "Never" not in text(alice_client.get("/keys/"))  # last used: now


def test_htmx_create_swaps_only_the_panel(alice_client):
    response = alice_client.post("/keys/", {"name": "bot"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert "<html" not in page
    assert KEY.search(page)
    assert 'hx-post="/keys/"' in page  # the fresh form comes back inside the panel


def test_a_name_is_required(alice_client, alice):
    response = alice_client.post("/keys/", {"name": "  "})
    assert "This field is required." in text(response)
    assert 'aria-invalid="true"' in text(response)
    assert not ApiKey.objects.filter(user=alice).exists()


def test_at_most_20_live_keys_says_so(alice_client, alice):
    for number in range(20):
        create_api_key(user=alice, name=f"key {number}")
    response = alice_client.post("/keys/", {"name": "one too many"})
    assert response.status_code == HTTPStatus.OK
    assert "You already have 20 live keys" in text(response)
    assert not KEY.search(response.content.decode())
    assert ApiKey.objects.filter(user=alice).count() == 20


def test_charlies_keys_never_appear(alice_client, charlie):
    create_api_key(user=charlie, name="charlie's secret key")
    page = text(alice_client.get("/keys/"))
    assert "charlie" not in page
    assert "No live keys." in page


def test_revoke_asks_first_then_the_api_refuses_the_key(alice_client, alice, alice_key):
    key = ApiKey.objects.get(user=alice)
    confirm = alice_client.get(f"/keys/{key.pk}/revoke/")
    assert confirm.status_code == HTTPStatus.OK
    assert "Revoke “alice&#x27;s key”?" in text(confirm)
    key.refresh_from_db()
    assert not key.is_revoked  # a GET changes nothing

    response = alice_client.post(f"/keys/{key.pk}/revoke/", follow=True)
    assert response.redirect_chain == [("/keys/", HTTPStatus.FOUND)]
    assert "revoked" in text(response)
    key.refresh_from_db()
    assert key.is_revoked
    assert generate(Client(), alice_key).status_code == HTTPStatus.UNAUTHORIZED


def test_revoked_keys_are_listed_apart(alice_client, alice):
    key, _ = create_api_key(user=alice, name="old one")
    alice_client.post(f"/keys/{key.pk}/revoke/")
    page = text(alice_client.get("/keys/"))
    assert "Revoked keys" in page and "old one" in page
    assert "No live keys." in page
    assert "Key already revoked" in text(alice_client.get(f"/keys/{key.pk}/revoke/"))


@pytest.mark.parametrize("method", ["get", "post"])
def test_revoking_another_users_key_is_404(alice_client, charlie, charlie_key, method):
    key = ApiKey.objects.get(user=charlie)
    response = getattr(alice_client, method)(f"/keys/{key.pk}/revoke/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    key.refresh_from_db()
    assert not key.is_revoked
    assert generate(Client(), charlie_key).status_code == HTTPStatus.OK


def test_revoke_and_create_need_the_csrf_token(alice, alice_key):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    key = ApiKey.objects.get(user=alice)
    assert client.post(f"/keys/{key.pk}/revoke/").status_code == HTTPStatus.FORBIDDEN
    assert client.post("/keys/", {"name": "x"}).status_code == HTTPStatus.FORBIDDEN
    client.get("/keys/")
    token = client.cookies["csrftoken"].value
    # htmx sends the token in a header, as hx-headers on <body> says.
    assert client.post("/keys/", {"name": "x"}, HTTP_X_CSRFTOKEN=token, HTTP_HX_REQUEST="true").status_code == 200
    key.refresh_from_db()
    assert not key.is_revoked
