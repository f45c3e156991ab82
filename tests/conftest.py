import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from accounts.apikeys import create_api_key
from accounts.models import User
from billing import ledger
from config.celery import app as celery_app
from generation import limits

# Under CI the real services are required: a test run without them fails, it never skips.
if os.environ.get("CI") == "true":
    assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), "CI must run on PostgreSQL"
    assert settings.REDIS_URL, "CI must run with REDIS_URL"


@pytest.fixture(autouse=True)
def _fresh_limits():
    """Each test starts with no rate-limit counters. (Not FLUSHDB: the Celery broker's queue
    bindings live in the same Redis database and a running worker depends on them.)"""
    limits.reset_all()
    yield


@pytest.fixture(scope="session", autouse=True)
def media_root(tmp_path_factory):
    """Images go to a temporary MEDIA_ROOT, shared with the test worker process. Passwords use
    a fast hasher: the production one costs about a second per user on these machines."""
    root = tmp_path_factory.mktemp("media")
    with override_settings(MEDIA_ROOT=str(root), PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield str(root)


@pytest.fixture(autouse=True)
def _eager_tasks(request, settings):
    """Tasks run in-process unless the test is marked `worker` and uses the real Celery worker;
    a `worker` test sends sync generations through it too (as GPU deployments do), where the
    others render network-only backends in the web process (GENERATION_RENDER_IN_WEB)."""
    eager = request.node.get_closest_marker("worker") is None
    if not eager:
        settings.GENERATION_RENDER_IN_WEB = False
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = eager
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, media_root):
    """A real `celery worker -Q generate` on Redis, against the test database."""
    assert settings.REDIS_URL, "worker tests need REDIS_URL"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "MEDIA_ROOT": media_root,
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",  # the tests' webhook receivers listen on loopback
        "WEBHOOK_ALLOWED_PORTS": "*",  # ... on ports of their own
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "generate,celery", "-P", "threads", "-c", "8",
         "--without-gossip", "--without-mingle", "-l", "warning", "-n", f"test-{os.getpid()}@%h"],
        env=env,
    )
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(timeout=0.5):
        assert worker.poll() is None, "the Celery worker exited at start"
        assert time.monotonic() < deadline, "the Celery worker did not answer in 60 s"
    yield worker
    worker.terminate()
    worker.wait(timeout=30)


def make_user(email="alice@example.com", *, balance="0", password="correct horse battery"):
    user = User.objects.create_user(email=email, password=password)
    if Decimal(balance) > 0:
        ledger.credit(user=user, amount=Decimal(balance), kind=ledger.Kind.ADJUSTMENT, reference=f"test-seed:{email}")
    return user


@pytest.fixture
def alice(db):
    return make_user("alice@example.com", balance="1")


@pytest.fixture
def charlie(db):
    """A second user whose data must never show up for alice."""
    return make_user("charlie@example.com", balance="1")


@pytest.fixture
def alice_key(alice):
    _, full_key = create_api_key(user=alice, name="alice's key")
    return full_key


@pytest.fixture
def charlie_key(charlie):
    _, full_key = create_api_key(user=charlie, name="charlie's key")
    return full_key


def generate(client, key, body=None, *, raw=None, content_type="application/json", **headers):
    """POST /api/generate the way curl does in the reference."""
    import json

    payload = raw if raw is not None else json.dumps(body if body is not None else {"prompt": "anime girl"})
    if key is not None:
        headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {key}")
    return client.post("/api/generate", data=payload, content_type=content_type, **headers)


def error_of(response) -> dict:
    """The reference's part of an error answer; the added fields are checked where they matter."""
    body = response.json()
    assert {"request_id", "retryable", "doc_url"} <= set(body), body
    return {"error": body["error"], "code": body["code"]}
