"""The OpenAI-compatible surface, driven by the real clients against a live server: the `openai`
SDK and LiteLLM (both pinned in the test extra), and the exact bodies Open WebUI and LibreChat
send (recorded from their source, see below). PostgreSQL and Redis, as everywhere."""

import base64
import io
import os
from decimal import Decimal

import httpx
import pytest
from PIL import Image

from accounts.apikeys import create_api_key
from billing import ledger
from billing.models import LedgerEntry
from generation import limits
from generation.models import Generation
from generation.openai_compat import orientation_for_size
from tests.conftest import make_user

# LiteLLM reads its model price map from GitHub at import unless told to use its bundled copy:
# nothing may download at test time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
import openai  # noqa: E402

PRICE = Decimal("0.009")


@pytest.fixture
def funded(transactional_db):
    user = make_user("sdk@example.com", balance="1")
    _, key = create_api_key(user=user, name="sdk")
    return user, key


def client_for(live_server, key, **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, **options)


def webp(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "WEBP"
    return image


@pytest.mark.parametrize("size, orientation", [
    ("512x512", "square"), ("256x256", "square"), ("1024x1024", "square"), ("1024x1536", "portrait"),
    ("1024x1792", "portrait"), ("1792x1024", "landscape"), ("1536x1024", "landscape"), ("auto", "square"),
    (None, "square"), ("832x1280", "portrait"), ("1000x1100", "square"),
])
def test_sizes_snap_by_aspect_ratio(size, orientation):
    assert orientation_for_size(size) == orientation


def test_the_sdk_gets_two_images_in_base64_with_a_negative_prompt(live_server, funded):
    user, key = funded
    response = client_for(live_server, key).images.generate(
        prompt="anime girl with blue hair, magical forest", n=2, size="1024x1536", response_format="b64_json",
        extra_body={"negative_prompt": "glasses, hat"},
    )
    assert len(response.data) == 2
    for datum in response.data:
        assert webp(base64.b64decode(datum.b64_json)).size == (832, 1280)
        assert datum.revised_prompt and datum.url is None
    assert ledger.balance(user=user) == Decimal("1") - 2 * PRICE == Decimal("0.982")  # $0.018
    rows = list(Generation.objects.filter(user=user))
    assert len(rows) == 2 and {row.user_negative_prompt for row in rows} == {"glasses, hat"}
    assert all(row.negative_prompt.endswith(", glasses, hat") for row in rows)
    assert len({row.seed for row in rows}) == 2 and rows[0].batch_id == rows[1].batch_id
    assert limits.daily_used(user_id=user.pk) == 2


def test_urls_load_with_the_clients_authorization_header_too(live_server, funded):
    _, key = funded
    response = client_for(live_server, key).images.generate(prompt="a fox", model="dall-e-3", size="1792x1024",
                                                            response_format="url")
    for headers in ({}, {"Authorization": f"Bearer {key}"}):
        fetched = httpx.get(response.data[0].url, headers=headers)
        assert fetched.status_code == 200 and webp(fetched.content).size == (1280, 832)


def test_presigned_deployments_answer_our_own_signed_link(live_server, funded, settings):
    """With IMAGE_URL_TTL_S > 0 storage URLs are presigned, which S3 refuses alongside a Bearer
    header (Open WebUI sends its own): the answer points at /v1/images/files/<token> instead."""
    settings.IMAGE_URL_TTL_S = 60
    _, key = funded
    url = client_for(live_server, key).images.generate(prompt="a fox", response_format="url").data[0].url
    assert "/v1/images/files/" in url
    fetched = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/webp"
    assert webp(fetched.content).size == (1024, 1024)
    assert httpx.get(url[:-3] + "abc").status_code == 404


def test_gpt_image_models_get_base64_by_default_and_others_a_url(live_server, funded):
    _, key = funded
    client = client_for(live_server, key)
    assert client.images.generate(prompt="a fox", model="gpt-image-1").data[0].b64_json
    assert client.images.generate(prompt="a fox", model="dall-e-2").data[0].url
    assert client.images.generate(prompt="a fox", model="dall-e-2", extra_body={"output_format": "png"}).data[0].b64_json


def test_a_bad_key_raises_the_sdks_authentication_error(live_server, funded):
    with pytest.raises(openai.AuthenticationError) as raised:
        client_for(live_server, "ank_" + "x" * 42).images.generate(prompt="a fox")
    error = raised.value.body
    assert error["type"] == "invalid_api_key" and error["code"] == "INVALID_KEY"
    assert raised.value.response.headers["x-should-retry"] == "false"


def test_zero_balance_raises_after_exactly_one_request(live_server, transactional_db):
    broke = make_user("broke@example.com", balance="0")
    _, key = create_api_key(user=broke)
    with pytest.raises(openai.APIStatusError) as raised:
        client_for(live_server, key).images.generate(prompt="a fox")  # the SDK retries twice by default
    assert raised.value.status_code == 402
    assert raised.value.body["type"] == "insufficient_quota" and raised.value.body["code"] == "INSUFFICIENT_BALANCE"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert Generation.objects.filter(user=broke).count() == 1  # one request reached the pipeline
    assert not LedgerEntry.objects.filter(user=broke, kind="charge").exists()


def test_the_content_policy_is_a_bad_request_never_retried(live_server, funded):
    user, key = funded
    with pytest.raises(openai.BadRequestError) as raised:
        client_for(live_server, key).images.generate(prompt="loli, nude")
    assert raised.value.body["code"] == "CONTENT_POLICY_VIOLATION"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert ledger.balance(user=user) == Decimal("1")


def test_the_rate_limit_is_429_with_retry_after(live_server, funded, settings):
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 1
    _, key = funded
    client = client_for(live_server, key, max_retries=0)
    client.images.generate(prompt="a fox")
    with pytest.raises(openai.RateLimitError) as raised:
        client.images.generate(prompt="a fox")
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert raised.value.body["code"] == "RATE_LIMIT_EXCEEDED"


def test_bad_fields_name_their_param(live_server, funded):
    _, key = funded
    client = client_for(live_server, key)
    for kwargs, param, code in (
        ({"n": 5}, "n", "INVALID_N"),
        ({"size": "huge"}, "size", "INVALID_SIZE"),
        ({"extra_body": {"allownsfw": False}}, "allownsfw", "UNKNOWN_FIELD"),
        ({"extra_body": {"negative_prompt": "x" * 1001}}, "negative_prompt", "INVALID_NEGATIVE_PROMPT"),
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            client.images.generate(prompt="a fox", **kwargs)
        assert (raised.value.body["param"], raised.value.body["code"]) == (param, code)


def test_models_list_our_ids(live_server, funded):
    _, key = funded
    assert [model.id for model in client_for(live_server, key).models.list()] == ["animagine-xl-4"]


def test_litellm_image_generation_returns_an_image(live_server, funded):
    user, key = funded
    response = litellm.image_generation(model="openai/animagine-xl-4", prompt="a fox in the snow",
                                        api_base=f"{live_server.url}/v1", api_key=key, size="1024x1024")
    url = response.data[0].url
    assert webp(httpx.get(url).content).size == (1024, 1024)
    assert ledger.balance(user=user) == Decimal("1") - PRICE


# --- the bodies the tools send ------------------------------------------------------------------
# Open WebUI (backend/open_webui/routers/images.py, engine "openai"): POST
# {IMAGES_OPENAI_API_BASE_URL}/images/generations with its Bearer key and
#   {"model": <IMAGE_GENERATION_MODEL>, "prompt": ..., "n": 1, "size": <IMAGE_SIZE, default 512x512>}
# plus "response_format": "b64_json" unless the model matches ^gpt-image; it then reads each
# data item's "url" (fetched with the same Authorization header) or "b64_json".
# LibreChat (api/app/clients/tools/structured/OpenAIImageTools.js, image_gen_oai): the openai
# SDK's images.generate with {"model": "gpt-image-1", "prompt", "n": 1, "background": "auto",
# "output_format": "png", "quality": "auto", "size": "auto"} (output_compression only for
# webp/jpeg), then reads data[0].b64_json.

def open_webui_fetch(body: dict, url: str, key: str) -> list[bytes]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    response = httpx.post(f"{url}/v1/images/generations", json=body, headers=headers, timeout=60)
    response.raise_for_status()
    images = []
    for image in response.json()["data"]:
        if image.get("url"):
            fetched = httpx.get(image["url"], headers=headers)  # load_url_image_data(image_url, headers)
            fetched.raise_for_status()
            images.append(fetched.content)
        else:
            images.append(base64.b64decode(image["b64_json"]))
    return images


@pytest.mark.parametrize("body", [
    {"model": "dall-e-2", "prompt": "a fox", "n": 1, "size": "512x512", "response_format": "b64_json"},
    {"model": "gpt-image-1", "prompt": "a fox", "n": 1, "size": "1024x1536"},
    {"model": "animagine-xl-4", "prompt": "a fox", "n": 1, "size": "1792x1024", "response_format": "b64_json",
     "negative_prompt": "hat"},  # IMAGES_OPENAI_API_PARAMS can add fields to the body
])
def test_open_webui_gets_an_image_it_can_read(live_server, funded, body):
    images = open_webui_fetch(body, live_server.url, funded[1])
    assert len(images) == 1 and webp(images[0]).size == {
        "512x512": (1024, 1024), "1024x1536": (832, 1280), "1792x1024": (1280, 832)}[body["size"]]


def test_open_webui_with_a_url_answer_fetches_it_with_its_bearer_header(live_server, funded, settings):
    settings.IMAGE_URL_TTL_S = 60  # the presigned case: our own link
    images = open_webui_fetch({"model": "dall-e-3", "prompt": "a fox", "n": 1, "size": "1024x1024",
                               "response_format": "url"}, live_server.url, funded[1])
    assert webp(images[0]).size == (1024, 1024)


def test_librechat_reads_data_0_b64_json(live_server, funded):
    user, key = funded
    response = client_for(live_server, key).images.generate(
        model="gpt-image-1", prompt="a fox", n=1, background="auto", output_format="png", quality="auto", size="auto")
    assert webp(base64.b64decode(response.data[0].b64_json)).size == (1024, 1024)
    assert ledger.balance(user=user) == Decimal("1") - PRICE


@pytest.mark.django_db
def test_an_unreadable_stored_image_is_answered_by_url_not_a_retryable_500(client, alice, alice_key, monkeypatch):
    from django.core.files.storage import default_storage

    from billing import ledger

    def unreadable(*args, **kwargs):
        raise OSError("S3 read timed out")

    monkeypatch.setattr(default_storage, "open", unreadable)
    response = client.post("/v1/images/generations", data={"prompt": "a fox", "response_format": "b64_json"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 200  # not a 5xx the SDKs would retry, and charge again
    datum = response.json()["data"][0]
    assert "b64_json" not in datum and datum["url"].startswith("http://testserver/")
    assert ledger.balance(user=alice) == Decimal("1") - Decimal("0.009")


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_django_level_errors_under_v1_are_in_openais_envelope(client, alice_key, settings, debug):
    settings.DEBUG = debug
    response = client.get("/v1/no-such-thing", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "NOT_FOUND" and error["type"] == "invalid_request_error" and error["message"]
    assert response["x-should-retry"] == "false"
