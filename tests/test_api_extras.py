"""Beyond the reference: test keys, per-key caps, richer answers, seeds and XMP, deletion, pricing."""

import datetime
import io
import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from PIL import Image

from accounts import keys
from accounts.apikeys import create_api_key
from billing import ledger
from billing.models import LedgerEntry
from generation.models import Generation
from generation.tasks import prune_old_images
from tests.conftest import error_of, generate, make_user
from tests.test_api_generate import ExplodingBackend, fetch_image, use_backend  # noqa: F401 (fixture)

PRICE = Decimal("0.009")


@pytest.mark.django_db
def test_test_key_is_free_uses_the_preview_backend_and_has_its_own_quota(client, alice, settings):
    settings.GENERATION_BACKEND = "runware"  # a live key would call Runware; a test key never does
    settings.ANIMEAPI_DAILY_LIMIT = 1
    out = StringIO()
    call_command("createapikey", alice.email, "--test", stdout=out, stderr=StringIO())
    test_key = out.getvalue().strip().splitlines()[-1]
    assert test_key.startswith("ank_test_") and keys.is_well_formed(test_key)

    response = generate(client, test_key, {"prompt": "ci run"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["cost_usd"] == 0 and body["model"] == "preview"
    assert ledger.balance(user=alice) == Decimal("1")
    assert not LedgerEntry.objects.filter(kind="charge").exists()
    assert Generation.objects.get().is_test
    # The test quota is separate: a second test call is refused, a live key is not.
    assert generate(client, test_key, {"prompt": "ci run"}).status_code == 429
    settings.GENERATION_BACKEND = "preview"
    _, live_key = create_api_key(user=alice)
    assert generate(client, live_key).status_code == 200


@pytest.mark.django_db
def test_truncated_key_is_refused_without_touching_the_database(client, alice_key, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = generate(client, alice_key[:-1])
    assert response.status_code == 401 and error_of(response)["code"] == "INVALID_KEY"


@pytest.mark.django_db(transaction=True)
def test_30_concurrent_requests_against_a_0_045_cap_give_exactly_5_images(settings):
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 1000
    user = make_user("capped@example.com", balance="10")
    api_key, full_key = create_api_key(user=user, spend_cap_total_usd=Decimal("0.045"))
    start = threading.Barrier(30)
    statuses, codes = [], []

    def call():
        from django.db import connection

        start.wait()
        try:
            response = generate(Client(), full_key, {"prompt": "race"})
            statuses.append(response.status_code)
            if response.status_code != 200:
                codes.append(response.json()["code"])
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses.count(200) == 5
    assert set(codes) == {"KEY_SPEND_CAP_REACHED"} and statuses.count(402) == 25
    assert ledger.balance(user=user) == Decimal("10") - 5 * PRICE == ledger.ledger_sum(user=user)
    api_key.refresh_from_db()
    assert api_key.spent_total_usd == Decimal("0.045")


@pytest.mark.django_db
def test_daily_cap_and_refunds_give_the_cap_back(client, alice, use_backend):
    api_key, full_key = create_api_key(user=alice, spend_cap_daily_usd=Decimal("0.018"))
    use_backend(ExplodingBackend())
    assert generate(client, full_key).status_code == 500  # refunded: the cap is not used up
    from generation.backends.preview import PreviewBackend

    use_backend(PreviewBackend())
    assert generate(client, full_key).status_code == 200
    assert generate(client, full_key).status_code == 200
    response = generate(client, full_key)
    assert response.status_code == 402
    assert error_of(response)["code"] == "KEY_SPEND_CAP_REACHED"
    assert ledger.balance(user=alice) == Decimal("1") - 2 * PRICE
    assert Generation.objects.filter(error_code="KEY_SPEND_CAP_REACHED").count() == 1


@pytest.mark.django_db
def test_expired_key_and_disallowed_ip_are_refused(client, alice):
    _, expired = create_api_key(user=alice, expires_at=timezone.now() - datetime.timedelta(minutes=1))
    response = generate(client, expired)
    assert response.status_code == 401 and error_of(response)["code"] == "KEY_EXPIRED"

    _, office_only = create_api_key(user=alice, allowed_networks="203.0.113.0/24, 2001:db8::/32")
    response = generate(client, office_only, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 403 and error_of(response)["code"] == "IP_NOT_ALLOWED"
    assert generate(client, office_only, REMOTE_ADDR="203.0.113.50").status_code == 200
    assert ledger.balance(user=alice) == Decimal("1") - PRICE


@pytest.mark.django_db
def test_seed_round_trips_and_the_file_says_how_it_was_made(client, alice_key, media_root):
    body = generate(client, alice_key, {"prompt": "a fox", "seed": 4294967295}).json()
    assert body["seed"] == 4294967295
    generation = Generation.objects.get()
    with open(f"{media_root}/{generation.image}", "rb") as stored:
        image = Image.open(io.BytesIO(stored.read()))
        image.load()
    xmp = image.info["xmp"].decode()
    assert "<animeapi:seed>4294967295</animeapi:seed>" in xmp
    assert f"<animeapi:prompt>{body['enhanced_prompt']}</animeapi:prompt>" in xmp
    assert "<animeapi:negativePrompt>" in xmp and "<animeapi:width>832</animeapi:width>" in xmp
    again = generate(client, alice_key, {"prompt": "a fox", "seed": 4294967295}).json()
    assert fetch_image(client, again["image_url"]).tobytes() == fetch_image(client, body["image_url"]).tobytes()


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [-1, 2**32, "7", 1.5, True])
def test_bad_seed_is_400(client, alice_key, seed):
    response = generate(client, alice_key, {"prompt": "a fox", "seed": seed})
    assert response.status_code == 400 and error_of(response)["code"] == "INVALID_SEED"


@pytest.mark.django_db
def test_answers_carry_cost_seed_id_size_and_model(client, alice, alice_key):
    response = generate(client, alice_key, {"prompt": "a fox", "orientation": "landscape"})
    body = response.json()
    generation = Generation.objects.get()
    assert body["id"] == str(generation.id)
    assert body["cost_usd"] == pytest.approx(0.009)
    assert (body["width"], body["height"], body["model"]) == (1280, 832, "preview")
    assert body["seed"] == generation.seed
    assert response["X-Balance-USD"] == "0.991000"
    assert response["X-Daily-Remaining"] == "4999"


@pytest.mark.django_db
def test_errors_carry_request_id_retryable_and_doc_url(client, alice_key):
    response = generate(client, alice_key, {"prompt": ""}, HTTP_X_REQUEST_ID="trace-42")
    body = response.json()
    assert body["request_id"] == "trace-42"
    assert body["retryable"] is False
    assert body["doc_url"] == "http://testserver/docs/#error-INVALID_PROMPT"
    assert response["X-Balance-USD"] == "1.000000"
    assert response["X-Daily-Remaining"] == "5000"
    poor = make_user("poor@example.com")
    _, key = create_api_key(user=poor)
    assert generate(client, key).json()["retryable"] is False
    unknown = client.get("/api/nowhere").json()
    assert unknown["code"] == "NOT_FOUND" and unknown["doc_url"].endswith("#error-NOT_FOUND")


@pytest.mark.django_db
def test_deleting_an_image_keeps_the_record_and_the_charge(client, alice, alice_key, charlie_key):
    body = generate(client, alice_key).json()
    url = f"/api/generations/{body['id']}"
    assert client.delete(url, HTTP_AUTHORIZATION=f"Bearer {charlie_key}").status_code == 404
    response = client.delete(url, HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 200
    assert response.json()["image_url"] is None and response.json()["status"] == "succeeded"
    path = body["image_url"].split("testserver", 1)[1]
    assert client.get(path).status_code == 404
    assert ledger.balance(user=alice) == Decimal("1") - PRICE
    generation = Generation.objects.get()
    assert generation.image == "" and generation.image_deleted_at and generation.cost_usd == PRICE


@pytest.mark.django_db
def test_retention_prunes_old_images_only(client, alice_key, settings):
    old = generate(client, alice_key).json()
    new = generate(client, alice_key).json()
    Generation.objects.filter(pk=old["id"]).update(created_at=timezone.now() - datetime.timedelta(days=31))
    assert prune_old_images() == 0  # retention off by default
    settings.IMAGE_RETENTION_DAYS = 30
    assert prune_old_images() == 1
    assert client.get(old["image_url"].split("testserver", 1)[1]).status_code == 404
    assert fetch_image(client, new["image_url"]).format == "WEBP"


@pytest.mark.django_db
def test_pricing_shows_price_limits_and_what_is_left(client, alice_key):
    generate(client, alice_key)
    body = client.get("/api/pricing", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert body["price_per_image_usd"] == pytest.approx(0.009) and body["currency"] == "USD"
    assert body["limits"] == {"requests_per_minute_per_key": 10, "images_per_day_per_user": 5000}
    assert body["remaining"]["images_today"] == 4999
    assert body["remaining"]["balance_usd"] == pytest.approx(0.991)
    assert body["remaining"]["images_affordable"] == 110
    assert body["orientations"]["portrait"] == {"width": 832, "height": 1280}


@pytest.mark.django_db
def test_test_and_live_keys_never_share_idempotent_answers(client, alice, alice_key):
    _, test_key = create_api_key(user=alice, test=True)
    free = generate(client, test_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="deploy-42").json()
    paid = generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="deploy-42")
    assert "Idempotent-Replayed" not in paid
    assert free["cost_usd"] == 0 and paid.json()["cost_usd"] == pytest.approx(0.009)
    assert Generation.objects.count() == 2


@pytest.mark.django_db
def test_a_bad_host_header_still_gets_a_json_error(alice_key):
    response = Client(raise_request_exception=False).post(
        "/api/generate", data="{}", content_type="application/json", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST" and response.json()["doc_url"] == "/docs/#error-INVALID_REQUEST"


@pytest.mark.django_db
def test_pricing_quotes_the_default_models_price(client, alice_key, settings):
    import json

    settings.GENERATION_MODELS = json.dumps([{"id": "dear-model", "price_usd": "0.05"}])
    body = client.get("/api/pricing", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert body["price_per_image_usd"] == pytest.approx(0.05)
    assert body["remaining"]["images_affordable"] == 20  # $1 at $0.05
    assert generate(client, alice_key).json()["cost_usd"] == pytest.approx(0.05)


@pytest.mark.django_db
def test_refunding_a_charge_made_before_the_daily_cap_never_opens_the_cap(alice):
    from accounts.apikeys import add_key_spend, remove_key_spend, set_key_limits
    from accounts.models import ApiKeyDailySpend

    api_key, _ = create_api_key(user=alice)
    today = timezone.now().date()
    add_key_spend(api_key=api_key, amount=PRICE, day=today)  # no daily cap yet: not counted daily
    set_key_limits(api_key=api_key, spend_cap_daily_usd=Decimal("0.018"))
    add_key_spend(api_key=api_key, amount=PRICE, day=today)  # counted: 0.009 of 0.018
    remove_key_spend(api_key_id=api_key.pk, amount=PRICE, day=today)  # the first charge's refund
    remove_key_spend(api_key_id=api_key.pk, amount=PRICE, day=today)  # ... and a second one
    assert ApiKeyDailySpend.objects.get(api_key=api_key, day=today).spent_usd == Decimal("0")  # not -0.009
