"""The playground: the API's pipeline, limits and charge for the user's session, answered in words."""

import json
import re
from decimal import Decimal
from http import HTTPStatus
from urllib.parse import urlencode

import pytest
from django.test import Client

from billing import ledger
from generation import limits
from generation.backends.base import BackendError, GenerationBackend
from generation.enhance import enhance_prompt
from generation.models import Generation

from .conftest import generate, make_user


def playground(client, *, headers=None, **fields):
    """POST the playground form as htmx does (form-encoded; an unchecked box is left out: None)."""
    body = {"prompt": "anime girl with blue hair", "orientation": "portrait", "enhance": "true", "allowNSFW": "true"}
    body = {name: value for name, value in {**body, **fields}.items() if value is not None}
    return client.post("/playground/generate", data=urlencode(body), content_type="application/x-www-form-urlencoded",
                       HTTP_HX_REQUEST="true", **(headers or {}))


def text(response):
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def use_backend(monkeypatch):
    def use(backend):
        monkeypatch.setattr("generation.rendering.get_backend", lambda name=None: backend)

    return use


def test_page_shows_the_form_and_balance(client, alice):
    client.force_login(alice)
    response = client.get("/playground/")
    assert response.status_code == HTTPStatus.OK
    page = text(response)
    assert 'hx-post="/playground/generate"' in page
    assert 'hx-disabled-elt="find button[type=\'submit\']"' in page
    assert 'maxlength="1000"' in page
    assert "$1.00" in page


def test_prompt_and_orientation_can_be_prefilled(client, alice):
    client.force_login(alice)
    page = text(client.get("/playground/", {"prompt": "a cat knight", "orientation": "landscape"}))
    assert ">a cat knight</textarea>" in page
    assert 'value="landscape" checked' in page


def test_generates_charges_and_shows_the_result(client, alice):
    client.force_login(alice)
    response = playground(client, prompt="anime girl in a forest", orientation="square")
    assert response.status_code == HTTPStatus.OK
    generation = Generation.objects.get(user=alice)
    assert (generation.status, generation.api_key, generation.orientation) == ("succeeded", None, "square")
    assert ledger.balance(user=alice) == Decimal("0.991")
    page = text(response)
    assert "<html" not in page  # a fragment for htmx
    assert f'src="http://testserver/media/{generation.image}"' in page
    assert generation.enhanced_prompt in page
    assert "$0.009" in page  # cost
    assert 'data-testid="result-balance">$0.991<' in page
    assert 'id="balance" hx-swap-oob="true"' in page
    assert f"/history/{generation.id}/" in page
    assert limits.daily_used(user_id=alice.pk) == 1


def test_unchecked_boxes_mean_false(client, alice):
    client.force_login(alice)
    playground(client, prompt="1girl, blue_hair", enhance=None, allowNSFW=None)
    generation = Generation.objects.get(user=alice)
    assert (generation.enhance, generation.allow_nsfw) == (False, False)
    # Sent as written, but allowNSFW: false still adds the safe rating (the safe prompt policy).
    assert generation.enhanced_prompt == "1girl, blue_hair, safe"


def test_insufficient_balance_in_words_with_a_top_up_link(client, db):
    broke = make_user("broke@example.com", balance="0.005")
    client.force_login(broke)
    response = playground(client)
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    page = text(response)
    assert "Insufficient balance — <a href=\"/billing/#add-funds\">top up</a>" in page
    assert "Nothing was charged" in page
    assert ledger.balance(user=broke) == Decimal("0.005")
    assert limits.daily_used(user_id=broke.pk) == 0  # the quota unit was given back


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 1001])
def test_invalid_prompt_in_words_and_never_charged(client, alice, prompt):
    client.force_login(alice)
    response = playground(client, prompt=prompt)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Write a prompt first" in text(response)
    assert not Generation.objects.exists()
    assert ledger.balance(user=alice) == Decimal(1)


def test_invalid_orientation_uses_the_api_message(client, alice):
    client.force_login(alice)
    response = playground(client, orientation="diagonal")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "orientation must be one of: portrait, square, landscape" in text(response)
    assert 'href="/docs/#error-INVALID_ORIENTATION"' in text(response)


def test_rate_limit_in_words_with_the_retry_time(client, alice, settings):
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 1
    client.force_login(alice)
    assert playground(client).status_code == HTTPStatus.OK
    response = playground(client)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert re.search(r"Too many requests\..*Try again in \d+ seconds", text(response))
    assert int(response["Retry-After"]) >= 1
    assert response["X-RateLimit-Limit"] == "1"
    assert Generation.objects.filter(user=alice).count() == 1


def test_daily_limit_in_words(client, alice, settings):
    settings.ANIMEAPI_DAILY_LIMIT = 1
    client.force_login(alice)
    assert playground(client).status_code == HTTPStatus.OK
    response = playground(client)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "Daily limit reached" in text(response)
    assert "resets at midnight UTC" in text(response)


def test_backend_failure_in_words_and_refunded(client, alice, use_backend):
    class Broken(GenerationBackend):
        def generate(self, request, *, deadline):
            raise BackendError("GPU fell over")

    use_backend(Broken())
    client.force_login(alice)
    response = playground(client)
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    page = text(response)
    assert "Generation failed." in page and "You were not charged" in page
    assert "GPU fell over" not in page  # details are for admins
    assert ledger.balance(user=alice) == Decimal(1)
    assert limits.daily_used(user_id=alice.pk) == 0


def test_logged_out_gets_a_login_link_not_a_charge(client, alice):
    response = playground(client)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert 'href="/accounts/login/?next=/playground/"' in text(response)
    assert not Generation.objects.exists()


def test_csrf_is_enforced_for_the_session(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/playground/")  # sets the CSRF cookie, as the page does for htmx
    refused = playground(client)
    assert refused.status_code == HTTPStatus.FORBIDDEN
    assert "Reload it and try again" in text(refused)
    assert not Generation.objects.exists()
    assert ledger.balance(user=alice) == Decimal(1)

    accepted = playground(client, headers={"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value})
    assert accepted.status_code == HTTPStatus.OK
    assert ledger.balance(user=alice) == Decimal("0.991")


def test_an_api_key_does_not_work_on_the_playground(client, alice, alice_key):
    response = playground(client, headers={"HTTP_AUTHORIZATION": f"Bearer {alice_key}"})
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert not Generation.objects.exists()


def test_playground_and_api_share_the_users_daily_quota(client, alice, alice_key, settings):
    settings.ANIMEAPI_DAILY_LIMIT = 1
    assert generate(client, alice_key).status_code == HTTPStatus.OK
    client.force_login(alice)
    assert playground(client).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_enhanced_prompt_preview(client, alice):
    client.force_login(alice)
    response = client.get("/playground/enhance", {"prompt": "girl with blue hair", "enhance": "true"},
                          HTTP_HX_REQUEST="true")
    assert response.status_code == HTTPStatus.OK
    expected = enhance_prompt("girl with blue hair", allow_nsfw=False).prompt
    assert expected in response.content.decode()
    as_written = client.get("/playground/enhance", {"prompt": "1girl, blue_hair"}, HTTP_HX_REQUEST="true")
    assert "Sent as written" in text(as_written)
    assert "1girl, blue_hair" in text(as_written)


def test_preview_needs_a_login(client, db):
    response = client.get("/playground/enhance", {"prompt": "girl", "enhance": "true"})
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert "girl" not in text(response)


def test_playground_endpoints_are_not_in_the_api_schema(client, alice_key):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}, HTTP_AUTHORIZATION=f"Bearer {alice_key}").content)
    assert "/api/generate" in schema["paths"]
    assert not [path for path in schema["paths"] if path.startswith("/playground")]


def test_several_images_a_negative_prompt_and_a_model_from_the_form(client, alice, settings):
    settings.GENERATION_MODELS = json.dumps([{"id": "animagine-xl-4", "name": "Animagine XL 4.0", "family": "animagine4"},
                                             {"id": "noobai-xl", "name": "NoobAI-XL", "family": "noobai"}])
    client.force_login(alice)
    page = text(client.get("/playground/"))
    assert '<option value="noobai-xl">NoobAI-XL</option>' in page and 'name="negative_prompt"' in page
    assert '<option value="4">4</option>' in page
    response = playground(client, prompt="a fox", n="2", negative_prompt="hat", model="noobai-xl")
    assert response.status_code == HTTPStatus.OK
    rows = list(Generation.objects.filter(user=alice).order_by("created_at"))
    assert len(rows) == 2 and {(row.catalog_model, row.user_negative_prompt) for row in rows} == {("noobai-xl", "hat")}
    assert rows[0].enhanced_prompt.startswith("masterpiece, best quality, newest")  # NoobAI's tags lead
    page = text(response)
    assert page.count('data-testid="result-image"') == 2 and "$0.018" in page
    assert ledger.balance(user=alice) == Decimal("1") - Decimal("0.018")
    detail = text(client.get(f"/history/{rows[0].id}/"))
    assert 'data-testid="negative-prompt">hat<' in detail and "noobai-xl" in detail
    refused = playground(client, prompt="a fox", n="9")
    assert refused.status_code == HTTPStatus.BAD_REQUEST and 'data-code="INVALID_N"' in text(refused)
