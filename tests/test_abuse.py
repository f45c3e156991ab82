"""The smaller holes an adversarial review found: each test here failed before its fix."""

import http.client
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from billing import ledger
from config.logging import ScrubSecretsFilter, scrub_secrets
from config.parsers import MAX_JSON_DEPTH
from config.wsgi import application
from generation import webhooks
from generation.backends.base import BackendError
from generation.backends.preview import PreviewBackend
from generation.models import Generation
from tests.conftest import error_of, generate, make_user
from tests.test_stripe_standin import WEBHOOK_URL, sign, stripe_api  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parent.parent


def nested(depth: int) -> str:
    return '{"prompt": "a fox", "seed": ' + "[" * depth + "]" * depth + "}"


# -- Deeply nested JSON ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_deeply_nested_json_is_a_400_that_uses_no_daily_unit(client, alice, alice_key, settings):
    settings.ANIMEAPI_DAILY_LIMIT = 1
    response = generate(client, alice_key, raw=nested(5000))
    assert response.status_code == 400
    assert error_of(response)["code"] == "INVALID_JSON"
    assert response.json()["retryable"] is False
    assert not Generation.objects.exists()
    # Shallow nesting is parsed as usual, and brackets inside strings are text.
    assert generate(client, alice_key, raw=nested(MAX_JSON_DEPTH - 2)).json()["code"] == "INVALID_SEED"
    deep_text = {"prompt": "[" * 400 + "fox" + "]" * 400}
    assert generate(client, alice_key, deep_text).status_code == 200
    assert ledger.balance(user=alice) == Decimal("1") - Decimal("0.009")


@pytest.mark.django_db
def test_deeply_nested_json_is_refused_on_the_free_endpoints(client, alice_key):
    response = client.post("/api/enhance", data=nested(5000), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


@pytest.mark.django_db
def test_deeply_nested_json_is_refused_by_the_stripe_webhook(stripe_api):  # noqa: F811
    body = '{"id": "evt_deep", "object": "event", "type": "x", "data": ' + "[" * 5000 + "]" * 5000 + "}"
    response = Client(enforce_csrf_checks=True).post(WEBHOOK_URL, data=body, content_type="application/json",
                                                     HTTP_STRIPE_SIGNATURE=sign(body))
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


# -- History and CSV on edge dates -------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("query", [
    {"end": "9999-12-31"}, {"start": "9999-12-31"}, {"start": "0001-01-01", "end": "0001-01-02"},
    {"start": "0001-01-01"}, {"start": "2999-12-31"},
])
def test_history_and_csv_survive_edge_dates(client, alice, query):
    client.force_login(alice)
    page = client.get("/history/", query)
    assert page.status_code == 200
    if set(query.values()) & {"9999-12-31", "0001-01-01", "0001-01-02"}:
        assert "Choose a date between 2000-01-01 and 2999-12-31." in page.content.decode()
    export = client.get("/history/export.csv", query)
    assert export.status_code == 200
    assert b"".join(export.streaming_content).startswith(b"created_at")


# -- DELETE on an unfinished generation ------------------------------------------------------------

@pytest.mark.django_db
def test_delete_of_a_running_generation_is_refused_and_deletes_nothing(client, alice, alice_key):
    generation = Generation.objects.create(
        user=alice, prompt="a fox", orientation="portrait", width=832, height=1280, allow_nsfw=True, enhance=True,
        backend="preview", cost_usd=Decimal("0.009"), status=Generation.Status.RUNNING)
    url = f"/api/generations/{generation.id}"
    response = client.delete(url, HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 409
    assert error_of(response)["code"] == "GENERATION_IN_PROGRESS"
    assert "nothing was deleted" in response.json()["error"]
    # The worker finishes afterwards: the image stays, and now it can be deleted.
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.SUCCEEDED, image="images/x.webp")
    generation.refresh_from_db()
    assert generation.image == "images/x.webp" and generation.image_deleted_at is None
    response = client.delete(url, HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 200 and response.json()["image_url"] is None


# -- Webhook URLs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url,reason", [
    ("https://93.184.216.34:6379/hook", "port"),
    ("https://93.184.216.34:22/hook", "port"),
    ("https://[64:ff9b::a00:1]/hook", "public"),  # NAT64 of 10.0.0.1
    ("https://[64:ff9b::7f00:1]/hook", "public"),  # NAT64 of 127.0.0.1
    ("https://[2002:c0a8:101::1]/hook", "public"),  # 6to4 of 192.168.1.1
    ("https://[::ffff:10.0.0.1]/hook", "public"),  # IPv4-mapped
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook", "public"),  # Teredo
    ("https://93.184.216.34/hook\n", "control"),
    ("https://93.184.216.34/ho\tok", "control"),
    ("https://93.184.216.34/a b", "control"),
])
def test_webhook_urls_that_reach_inside_are_refused(url, reason, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PORTS = ["80", "443", "8443"]
    with pytest.raises(webhooks.UnsafeWebhookUrl, match=reason):
        webhooks.check_url(url)


def test_public_webhook_urls_on_web_ports_are_accepted(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PORTS = ["80", "443", "8443"]
    assert webhooks.check_url("https://93.184.216.34/hook") == "93.184.216.34"
    assert webhooks.check_url("https://93.184.216.34:8443/hook") == "93.184.216.34"
    assert webhooks.check_url("https://[2606:4700:4700::1111]/hook") == "2606:4700:4700::1111"
    settings.WEBHOOK_ALLOWED_PORTS = ["*"]
    assert webhooks.check_url("https://93.184.216.34:9000/hook") == "93.184.216.34"


@pytest.mark.django_db
def test_the_api_refuses_a_webhook_url_on_another_port(client, alice, alice_key, settings):
    settings.WEBHOOK_ALLOWED_PORTS = ["80", "443", "8443"]
    response = generate(client, alice_key, {"prompt": "a fox", "async": True,
                                            "webhook_url": "https://93.184.216.34:5432/hook"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "INVALID_WEBHOOK_URL"
    assert ledger.balance(user=alice) == Decimal("1")


# -- Retryable failures are not replayed under their Idempotency-Key ----------------------------------

class FailingOnceBackend(PreviewBackend):
    def __init__(self):
        self.calls = 0

    def generate(self, request, *, deadline):
        self.calls += 1
        if self.calls == 1:
            raise BackendError("GPU fell over")
        return super().generate(request, deadline=deadline)


@pytest.mark.django_db
def test_a_retry_after_a_retryable_failure_runs_again(client, alice, alice_key, monkeypatch):
    backend = FailingOnceBackend()
    monkeypatch.setattr("generation.rendering.get_backend", lambda name=None: backend)
    first = generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="order-7")
    assert first.status_code == 500 and first.json()["retryable"] is True
    again = generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="order-7")
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again
    assert backend.calls == 2
    # The success is what is kept now: a third try replays it, charged once in all.
    third = generate(client, alice_key, {"prompt": "a fox"}, HTTP_IDEMPOTENCY_KEY="order-7")
    assert third["Idempotent-Replayed"] == "true" and third.json() == again.json()
    assert ledger.balance(user=alice) == Decimal("1") - Decimal("0.009") == ledger.ledger_sum(user=alice)


# -- Keys in URLs ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_key_in_the_query_string_is_never_accepted(client, alice_key):
    for query in (f"api_key={alice_key}", f"key={alice_key.replace('_', '%5F', 1)}"):
        response = client.get(f"/api/pricing?{query}")
        assert response.status_code == 401
        assert "Authorization header" in response.json()["error"]
    # Even beside a valid header: the key in the URL is exposed, and the caller must hear it.
    response = client.get(f"/api/pricing?api_key={alice_key}", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 401
    # A search that merely contains "ank_" is not a key.
    for query in ("tank_top", "blank_eyes", "tank%5Ftop"):
        response = client.get(f"/api/tags?q={query}", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
        assert response.status_code == 200, (query, response.content)


def test_keys_are_scrubbed_from_log_lines():
    key = "ank_" + "a1B2" * 10 + "zz"
    assert scrub_secrets(f"GET /api/pricing?api_key={key}&x=1") == "GET /api/pricing?api_key=ank_[REDACTED]&x=1"
    assert key not in scrub_secrets(f"/x?k={key.replace('_', '%5F')}")
    assert scrub_secrets("GET /api/tags?q=tank_top_and_skirt") == "GET /api/tags?q=tank_top_and_skirt"
    record = logging.LogRecord("django.server", logging.INFO, "", 0, '"%s" %s', (f"GET /?api_key={key}", 401), None)
    ScrubSecretsFilter().filter(record)
    assert key not in record.getMessage() and "ank_[REDACTED]" in record.getMessage()


# -- Every /api/ and /v1/ answer is JSON, DEBUG or not ----------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("path", ["/api/nope", "/api/generations/not-a-uuid", "/api/"])  # /v1/: test_openai_compat
def test_unknown_api_paths_answer_json_in_every_mode(client, settings, debug, path):
    settings.DEBUG = debug
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert error_of(response) == {"error": "Not found", "code": "NOT_FOUND"}


# -- Chunked request bodies ------------------------------------------------------------------------

def test_a_chunked_body_reaches_the_view():
    """At the WSGI boundary, as gunicorn hands it over: decoded chunks and no Content-Length."""
    body = json.dumps({"prompt": ""}).encode()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/enhance", "SERVER_NAME": "testserver", "SERVER_PORT": "80",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "CONTENT_TYPE": "application/json", "HTTP_TRANSFER_ENCODING": "chunked", "HTTP_HOST": "testserver",
    }
    seen = {}
    application(environ, lambda status, headers: seen.setdefault("status", status))
    assert environ["CONTENT_LENGTH"] == str(len(body))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """The production web server (config/gunicorn.py) against the test database."""
    db = connection.settings_dict
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ,
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
           "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2",
           "ALLOWED_HOSTS": "127.0.0.1", "LOG_FORMAT": "plain", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gunicorn did not start in 30 s"
            time.sleep(0.1)
    yield port, log
    process.terminate()
    process.wait(timeout=15)


def test_chunked_bodies_and_keys_in_urls_through_gunicorn(gunicorn):
    port, log = gunicorn
    user = make_user("chunky@example.com", balance="1")
    from accounts.apikeys import create_api_key

    _, key = create_api_key(user=user)
    body = json.dumps({"prompt": "anime girl with blue hair"}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/api/enhance")
    conn.putheader("Authorization", f"Bearer {key}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for start in range(0, len(body), 7):
        piece = body[start:start + 7]
        conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200, answer
    assert "blue_hair" in answer["enhanced_prompt"]

    conn.request("GET", f"/api/pricing?api_key={key}")
    response = conn.getresponse()
    response.read()
    assert response.status == 401
    conn.close()
    time.sleep(0.5)  # the access log line is written after the answer
    logged = log.read_text()
    assert "/api/pricing?api_key=ank_[REDACTED]" in logged
    assert key not in logged
