import io
import json
import threading
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.test import Client
from PIL import Image

from accounts.apikeys import create_api_key, revoke_api_key
from billing import ledger
from billing.models import LedgerEntry
from generation import backends
from generation.backends.base import BackendError, BackendImage
from generation.backends.preview import PreviewBackend
from generation.models import Generation, IdempotencyRecord
from tests.conftest import error_of, generate, make_user

PRICE = Decimal("0.009")

# The reference's three example requests, byte for byte.
REFERENCE_MINIMAL = '{"prompt": "anime girl with blue hair"}'
REFERENCE_OPTIONS = """{
    "prompt": "anime girl with blue hair, magical forest",
    "orientation": "landscape",
    "allowNSFW": false,
    "enhance": true
  }"""
REFERENCE_RAW = """{
    "prompt": "masterpiece, best quality, 1girl, blue_hair, forest, magical",
    "enhance": false
  }"""


def fetch_image(client, url):
    path = url.split("://", 1)[1].split("/", 1)[1]
    response = client.get("/" + path)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(b"".join(response.streaming_content)))


@pytest.mark.django_db
@pytest.mark.parametrize("raw,size", [
    (REFERENCE_MINIMAL, (832, 1280)),
    (REFERENCE_OPTIONS, (1280, 832)),
    (REFERENCE_RAW, (832, 1280)),
])
def test_reference_examples_return_a_webp_of_the_right_size(client, alice, alice_key, raw, size):
    response = generate(client, alice_key, raw=raw)

    assert response.status_code == HTTPStatus.OK, response.content
    body = response.json()
    assert {"image_url", "enhanced_prompt", "balance_usd", "generation_time_ms"} <= set(body)
    assert body["image_url"].startswith("http://testserver/media/images/")
    assert body["balance_usd"] == pytest.approx(0.991)
    assert isinstance(body["generation_time_ms"], int) and body["generation_time_ms"] >= 0
    image = fetch_image(client, body["image_url"])
    assert image.format == "WEBP"
    assert image.size == size
    assert ledger.balance(user=alice) == Decimal("1") - PRICE
    generation = Generation.objects.get(user=alice)
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.enhanced_prompt == body["enhanced_prompt"]
    assert generation.total_ms == body["generation_time_ms"]


@pytest.mark.django_db
def test_enhance_false_sends_the_prompt_unchanged(client, alice_key):
    body = generate(client, alice_key, raw=REFERENCE_RAW).json()
    assert body["enhanced_prompt"] == "masterpiece, best quality, 1girl, blue_hair, forest, magical"


@pytest.mark.django_db
def test_square_orientation(client, alice_key):
    body = generate(client, alice_key, {"prompt": "a cat", "orientation": "square"}).json()
    assert fetch_image(client, body["image_url"]).size == (1024, 1024)


@pytest.mark.django_db
def test_public_base_url_builds_image_url(client, alice_key, settings):
    settings.PUBLIC_BASE_URL = "https://api.animeapi.example"
    body = generate(client, alice_key).json()
    assert body["image_url"].startswith("https://api.animeapi.example/media/images/")


@pytest.mark.django_db
@pytest.mark.parametrize("raw,content_type,code", [
    ("{}", "application/json", "INVALID_PROMPT"),
    ('{"prompt": ""}', "application/json", "INVALID_PROMPT"),
    ('{"prompt": "   "}', "application/json", "INVALID_PROMPT"),
    (json.dumps({"prompt": "x" * 1001}), "application/json", "INVALID_PROMPT"),
    ('{"prompt": 42}', "application/json", "INVALID_PROMPT"),
    ('{"prompt": ["a"]}', "application/json", "INVALID_PROMPT"),
    ('{"prompt": "a", "orientation": "wide"}', "application/json", "INVALID_ORIENTATION"),
    ('{"prompt": "a", "orientation": 1}', "application/json", "INVALID_ORIENTATION"),
    ('{"prompt": "a", "allowNSFW": "false"}', "application/json", "INVALID_ALLOW_NSFW"),
    ('{"prompt": "a", "allowNSFW": 0}', "application/json", "INVALID_ALLOW_NSFW"),
    ('{"prompt": "a", "enhance": null}', "application/json", "INVALID_ENHANCE"),
    ('{"prompt": "a", "allowNsfw": false}', "application/json", "UNKNOWN_FIELD"),
    ('{"prompt": "a",', "application/json", "INVALID_JSON"),
    ('["a"]', "application/json", "INVALID_REQUEST"),
    ('"a"', "application/json", "INVALID_REQUEST"),
    ("prompt=a", "application/x-www-form-urlencoded", "INVALID_CONTENT_TYPE"),
    ("a girl", "text/plain", "INVALID_CONTENT_TYPE"),
])
def test_bad_input_is_a_400_with_a_code_and_never_charged(client, alice, alice_key, raw, content_type, code):
    response = generate(client, alice_key, raw=raw, content_type=content_type)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"] == "application/json"
    body = error_of(response)
    assert body["code"] == code and body["error"]
    assert ledger.balance(user=alice) == Decimal("1")
    assert not Generation.objects.exists()


@pytest.mark.django_db
def test_exactly_1000_characters_after_trimming_is_accepted(client, alice_key):
    assert generate(client, alice_key, {"prompt": "  " + "x" * 1000 + "  "}).status_code == 200


@pytest.mark.django_db
def test_oversized_body_is_413(client, alice, alice_key):
    response = generate(client, alice_key, raw=json.dumps({"prompt": "x" * 70000}))
    assert response.status_code == 413
    assert response.json()["code"] == "REQUEST_TOO_LARGE"


@pytest.mark.django_db
@pytest.mark.parametrize("header", [
    None,
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer ank_short",
    "Bearer not-a-key-at-all",
])
def test_missing_or_malformed_key_is_401(client, alice, header):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post("/api/generate", data='{"prompt": "a"}', content_type="application/json", **headers)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert error_of(response) == {"error": "Invalid API key", "code": "INVALID_KEY"}


@pytest.mark.django_db
def test_unknown_and_revoked_keys_are_401(client, alice):
    api_key, full_key = create_api_key(user=alice)
    from accounts import keys

    unknown = keys.generate_key()
    assert error_of(generate(client, unknown)) == {"error": "Invalid API key", "code": "INVALID_KEY"}
    assert generate(client, full_key).status_code == 200
    revoke_api_key(api_key=api_key)
    response = generate(client, full_key)
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_KEY"


@pytest.mark.django_db
def test_wrong_method_and_unknown_path_are_json(client, alice_key):
    response = client.get("/api/generate", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert error_of(response) == {"error": "Not found", "code": "NOT_FOUND"}


@pytest.mark.django_db
def test_unexpected_crash_is_a_json_500(alice_key, monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("generation.dispatch.generate_and_wait_all", crash)
    response = generate(Client(raise_request_exception=False), alice_key)
    assert response.status_code == 500
    assert response.json()["code"] == "INTERNAL_ERROR"


@pytest.mark.django_db
def test_insufficient_balance_is_402_and_recorded(client):
    poor = make_user("poor@example.com", balance="0.008")
    _, key = create_api_key(user=poor)
    response = generate(client, key)
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert error_of(response) == {"error": "Insufficient balance", "code": "INSUFFICIENT_BALANCE"}
    assert ledger.balance(user=poor) == Decimal("0.008")
    generation = Generation.objects.get(user=poor)
    assert generation.status == "failed" and generation.error_code == "INSUFFICIENT_BALANCE"
    assert generation.cost_usd == 0


class ExplodingBackend(PreviewBackend):
    def generate(self, request, *, deadline):
        raise BackendError("GPU fell over", provider_code="oom")


class FlaggingBackend(PreviewBackend):
    def __init__(self, flags):
        self.flags = list(flags)

    def generate(self, request, *, deadline):
        image = super().generate(request, deadline=deadline)
        return BackendImage(data=image.data, seed=request.seed, model="preview", nsfw=self.flags.pop(0))


@pytest.fixture
def use_backend(monkeypatch):
    def install(backend):
        monkeypatch.setattr(backends, "get_backend", lambda name=None: backend)
        monkeypatch.setattr("generation.rendering.get_backend", lambda name=None: backend)

    return install


@pytest.mark.django_db
def test_backend_failure_refunds_and_answers_500(client, alice, alice_key, use_backend):
    use_backend(ExplodingBackend())
    response = generate(client, alice_key)
    assert response.status_code == 500
    assert error_of(response) == {"error": "Generation failed", "code": "GENERATION_FAILED"}
    assert ledger.balance(user=alice) == Decimal("1") == ledger.ledger_sum(user=alice)
    kinds = list(LedgerEntry.objects.filter(user=alice).order_by("id").values_list("kind", flat=True))
    assert kinds == ["adjustment", "charge", "refund"]
    generation = Generation.objects.get(user=alice)
    assert generation.status == "failed"
    assert "GPU fell over" in generation.error_detail and "oom" in generation.error_detail
    assert "GPU" not in response.content.decode()


@pytest.mark.django_db
def test_flagged_image_with_allow_nsfw_false_is_withheld_and_refunded(client, alice, alice_key, use_backend):
    use_backend(FlaggingBackend([True, True]))
    response = generate(client, alice_key, {"prompt": "a girl", "allowNSFW": False})
    assert response.status_code == 422
    assert response.json()["code"] == "NSFW_CONTENT_BLOCKED"
    assert ledger.balance(user=alice) == Decimal("1")


@pytest.mark.django_db
def test_flagged_once_is_retried_with_a_new_seed(client, alice, alice_key, use_backend):
    use_backend(FlaggingBackend([True, False]))
    assert generate(client, alice_key, {"prompt": "a girl", "allowNSFW": False}).status_code == 200
    assert ledger.balance(user=alice) == Decimal("1") - PRICE


@pytest.mark.django_db
def test_flagged_image_is_returned_when_nsfw_is_allowed(client, alice_key, use_backend):
    use_backend(FlaggingBackend([True]))
    assert generate(client, alice_key, {"prompt": "a girl"}).status_code == 200


@pytest.mark.django_db
def test_eleven_quick_requests_give_ten_200_and_one_429(client, alice, alice_key):
    alice_balance = ledger.balance(user=alice)
    responses = [generate(client, alice_key) for _ in range(11)]
    assert [r.status_code for r in responses] == [200] * 10 + [429]
    refused = responses[-1]
    assert error_of(refused) == {"error": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED"}
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert [r["X-RateLimit-Remaining"] for r in responses[:3]] == ["9", "8", "7"]
    assert all(r["X-RateLimit-Limit"] == "10" and int(r["X-RateLimit-Reset"]) > 0 for r in responses)
    assert ledger.balance(user=alice) == alice_balance - 10 * PRICE


@pytest.mark.django_db
def test_rate_limit_is_per_key(client, alice, alice_key):
    _, second_key = create_api_key(user=alice)
    for _ in range(10):
        generate(client, alice_key)
    assert generate(client, alice_key).status_code == 429
    assert generate(client, second_key).status_code == 200


@pytest.mark.django_db
def test_daily_limit_counts_across_a_users_keys(client, alice, alice_key, charlie_key, settings, use_backend):
    settings.ANIMEAPI_DAILY_LIMIT = 3
    _, second_key = create_api_key(user=alice)
    assert generate(client, alice_key).status_code == 200
    assert generate(client, second_key).status_code == 200
    # A failed generation gives its unit back.
    use_backend(ExplodingBackend())
    assert generate(client, alice_key).status_code == 500
    use_backend(PreviewBackend())
    assert generate(client, alice_key).status_code == 200
    response = generate(client, second_key)
    assert response.status_code == 429
    assert error_of(response) == {"error": "Daily limit exceeded", "code": "DAILY_LIMIT_EXCEEDED"}
    assert int(response["Retry-After"]) <= 86400
    assert ledger.balance(user=alice) == Decimal("1") - 3 * PRICE
    # Another user's quota is their own.
    assert generate(client, charlie_key).status_code == 200


@pytest.mark.django_db
def test_bad_requests_do_not_use_the_daily_quota(client, alice_key, settings):
    settings.ANIMEAPI_DAILY_LIMIT = 1
    for _ in range(3):
        assert generate(client, alice_key, {"prompt": ""}).status_code == 400
    assert generate(client, alice_key).status_code == 200


@pytest.mark.django_db
def test_request_id_is_kept_or_made(client, alice_key):
    response = generate(client, alice_key, HTTP_X_REQUEST_ID="my-trace-123")
    assert response["X-Request-ID"] == "my-trace-123"
    assert Generation.objects.get().request_id == "my-trace-123"
    response = generate(client, alice_key, {"prompt": ""})
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_idempotent_retry_returns_the_first_answer_and_charges_once(client, alice, alice_key):
    first = generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="order-1")
    again = generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Generation.objects.count() == 1
    assert ledger.balance(user=alice) == Decimal("1") - PRICE


@pytest.mark.django_db
def test_idempotency_key_with_another_body_is_422(client, alice, alice_key):
    generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="order-2")
    response = generate(client, alice_key, {"prompt": "a wolf"}, HTTP_IDEMPOTENCY_KEY="order-2")
    assert response.status_code == 422
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert Generation.objects.count() == 1


@pytest.mark.django_db
def test_idempotency_key_still_in_progress_is_409(client, alice, alice_key):
    from generation.idempotency import request_fingerprint

    IdempotencyRecord.objects.create(user=alice, key="live:order-3", request_hash=request_fingerprint({"prompt": "a fox"}))
    response = generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="order-3")
    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert not Generation.objects.exists()


@pytest.mark.django_db
def test_idempotency_keys_are_per_user(client, alice, alice_key, charlie, charlie_key):
    generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="shared")
    response = generate(client, charlie_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="shared")
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response
    assert ledger.balance(user=charlie) == Decimal("1") - PRICE


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_through_a_real_worker(celery_worker):
    user = make_user("worker@example.com", balance="1")
    _, key = create_api_key(user=user)
    response = generate(Client(), key, raw=REFERENCE_OPTIONS)
    assert response.status_code == 200, response.content
    generation = Generation.objects.get(user=user)
    assert generation.status == "succeeded" and generation.queue_ms is not None
    assert ledger.balance(user=user) == Decimal("1") - PRICE


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_40_concurrent_requests_with_money_for_20_give_exactly_20_images(celery_worker, settings):
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 1000
    user = make_user("crowd@example.com", balance=PRICE * 20)
    _, key = create_api_key(user=user)
    start = threading.Barrier(40)
    statuses = []

    def call():
        from django.db import connection

        start.wait()
        try:
            statuses.append(generate(Client(), key, {"prompt": "crowd"}).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * 20 + [402] * 20
    assert ledger.balance(user=user) == Decimal("0") == ledger.ledger_sum(user=user)
    assert Generation.objects.filter(user=user, status="succeeded").count() == 20
    assert Generation.objects.filter(user=user, status="failed", error_code="INSUFFICIENT_BALANCE").count() == 20
