import datetime
import hashlib
import hmac
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.utils import timezone

from billing import ledger
from generation import charging, limits
from generation.models import Generation
from generation.tasks import expire_stale_generations
from tests.conftest import error_of, generate, make_user
from tests.test_api_generate import ExplodingBackend, fetch_image, use_backend  # noqa: F401 (fixture)

PRICE = Decimal("0.009")


class Receiver:
    """A webhook receiver on loopback that records what it got and answers with `statuses`."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.calls = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/animeapi"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.calls


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_ALLOWED_PORTS = ["*"]
    made = []

    def start(statuses=(200,)):
        made.append(Receiver(statuses))
        return made[-1]

    yield start
    for r in made:
        r.server.shutdown()


def verify(headers, body, secret):
    parts = dict(item.split("=", 1) for item in headers["AnimeAPI-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["header", "body"])
def test_async_request_answers_202_then_the_status_url_has_the_image(client, alice, alice_key, how):
    if how == "header":
        response = generate(client, alice_key, {"prompt": "a fox"}, HTTP_PREFER="respond-async")
    else:
        response = generate(client, alice_key, {"prompt": "a fox", "async": True})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "status", "status_url"}
    assert response["Location"] == body["status_url"] == f"http://testserver/api/generations/{body['id']}"

    status = client.get(body["status_url"], HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert status["status"] == "succeeded"
    assert {"image_url", "enhanced_prompt", "balance_usd", "generation_time_ms"} <= set(status)
    assert status["balance_usd"] == pytest.approx(float(Decimal("1") - PRICE))
    assert fetch_image(client, status["image_url"]).size == (832, 1280)
    assert ledger.balance(user=alice) == Decimal("1") - PRICE


@pytest.mark.django_db
def test_generations_are_scoped_to_their_owner(client, alice_key, charlie_key):
    mine = generate(client, alice_key, {"prompt": "mine", "async": True}).json()["id"]
    generate(client, charlie_key, {"prompt": "theirs"})
    response = client.get(f"/api/generations/{mine}", HTTP_AUTHORIZATION=f"Bearer {charlie_key}")
    assert response.status_code == 404
    assert error_of(response) == {"error": "No such generation", "code": "NOT_FOUND"}
    listed = client.get("/api/generations", HTTP_AUTHORIZATION=f"Bearer {charlie_key}").json()
    assert [g["prompt"] for g in listed["results"]] == ["theirs"]
    assert client.get(f"/api/generations/{mine}").status_code == 401


@pytest.mark.django_db
def test_list_is_newest_first_and_paginated(client, alice_key):
    for i in range(3):
        generate(client, alice_key, {"prompt": f"picture {i}"})
    page = client.get("/api/generations?limit=2", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert [g["prompt"] for g in page["results"]] == ["picture 2", "picture 1"]
    rest = client.get(page["next"], HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert [g["prompt"] for g in rest["results"]] == ["picture 0"]


@pytest.mark.django_db
def test_failed_async_generation_is_refunded_reported_and_gives_its_unit_back(client, alice, alice_key, use_backend, receiver):
    use_backend(ExplodingBackend())
    hook = receiver()
    response = generate(client, alice_key, {"prompt": "boom", "async": True, "webhook_url": hook.url})
    assert response.status_code == 202
    status = client.get(response.json()["status_url"], HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert status["status"] == "failed"
    assert status["error"] == {"error": "Generation failed", "code": "GENERATION_FAILED"}
    assert ledger.balance(user=alice) == Decimal("1")
    assert limits.daily_used(user_id=alice.pk) == 0
    (headers, body), = hook.wait_for(1)
    assert json.loads(body)["type"] == "generation.failed"


@pytest.mark.django_db
def test_webhook_is_signed_and_retried_until_delivered(client, alice, alice_key, receiver):
    hook = receiver(statuses=[500, 200])
    response = generate(client, alice_key, {"prompt": "a fox", "async": True, "webhook_url": hook.url})
    calls = hook.wait_for(2)
    assert len(calls) == 2
    headers, body = calls[-1]
    assert verify(headers, body, alice.webhook_secret)
    event = json.loads(body)
    assert event["type"] == "generation.succeeded"
    assert event["data"]["id"] == response.json()["id"]
    assert event["data"]["image_url"].startswith("http://testserver/media/images/")
    generation = Generation.objects.get()
    assert generation.webhook_attempts == 2 and generation.webhook_delivered_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("body,message", [
    ({"prompt": "a", "webhook_url": "https://example.com/hook"}, "needs an async request"),
    ({"prompt": "a", "async": True, "webhook_url": "http://127.0.0.1:9/hook"}, "https"),
    ({"prompt": "a", "async": True, "webhook_url": "https://127.0.0.1/hook"}, "public addresses"),
    ({"prompt": "a", "async": True, "webhook_url": "https://10.1.2.3/hook"}, "public addresses"),
    ({"prompt": "a", "async": True, "webhook_url": "https://[::1]/hook"}, "public addresses"),
    ({"prompt": "a", "async": True, "webhook_url": "https://example.com:99999/hook"}, "invalid port"),
    ({"prompt": "a", "async": "yes"}, "async must be a boolean"),
])
def test_unsafe_or_misused_webhooks_are_refused_before_charging(client, alice, alice_key, body, message, settings):
    settings.DEBUG = False
    response = generate(client, alice_key, body)
    assert response.status_code == 400
    assert response.json()["code"] in ("INVALID_WEBHOOK_URL", "INVALID_ASYNC")
    assert message in response.json()["error"]
    assert ledger.balance(user=alice) == Decimal("1")
    assert not Generation.objects.exists()


@pytest.mark.django_db
def test_stale_reservations_are_refunded_by_the_beat_task(alice, settings):
    settings.GENERATION_LEASE_S = 60
    stuck = charging.start_generation(user=alice, api_key=None, params=charging.GenerationParams(prompt="stuck"))
    fresh = charging.start_generation(user=alice, api_key=None, params=charging.GenerationParams(prompt="fresh"))
    Generation.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=5),
                                                  status=Generation.Status.RUNNING)
    assert ledger.balance(user=alice) == Decimal("1") - 2 * PRICE

    assert expire_stale_generations() == 1
    assert expire_stale_generations() == 0
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "expired" in stuck.error_detail
    assert Generation.objects.get(pk=fresh.pk).status == "pending"
    assert ledger.balance(user=alice) == Decimal("1") - PRICE == ledger.ledger_sum(user=alice)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_async_job_on_a_real_worker_calls_the_webhook(celery_worker, receiver):
    user = make_user("async@example.com", balance="1")
    from accounts.apikeys import create_api_key

    _, key = create_api_key(user=user)
    hook = receiver()
    response = generate(Client(), key, {"prompt": "a fox", "async": True, "webhook_url": hook.url})
    assert response.status_code == 202
    (headers, body), = hook.wait_for(1, timeout=30)
    assert verify(headers, body, user.webhook_secret)
    assert json.loads(body)["data"]["status"] == "succeeded"
    status = Client().get(response.json()["status_url"], HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert status["status"] == "succeeded"


def test_delivery_connects_to_the_checked_address_with_the_original_host():
    from generation.webhooks import _pinned

    url, headers, extensions = _pinned("https://hooks.example.com:8443/animeapi?x=1", "203.0.113.7")
    assert url == "https://203.0.113.7:8443/animeapi?x=1"
    assert headers == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}  # TLS still verifies the real name
    url, _, _ = _pinned("https://hooks.example.com/h", "2001:db8::1")
    assert url == "https://[2001:db8::1]/h"
