"""Beyond the reference: n images per request, a negative prompt, and the choice of model.

On PostgreSQL and Redis; the partial failure runs on a real Celery worker (a batch task)."""

import functools
import io
import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.db import connection
from PIL import Image

from billing import ledger
from billing.models import LedgerEntry
from config.celery import app as celery_app
from generation import limits
from generation.backends.base import BackendError
from generation.backends.preview import PreviewBackend
from generation.models import Generation
from generation.tasks import run_generation_batch_task, run_generation_task
from tests.conftest import error_of, generate, make_user

PRICE = Decimal("0.009")
MODELS = json.dumps([
    {"id": "animagine-xl-4", "name": "Animagine XL 4.0", "family": "animagine4", "runware_air": "civitai:1@1"},
    {"id": "illustrious-xl", "name": "Illustrious-XL", "family": "illustrious", "steps": 30, "cfg": 6.5,
     "price_usd": "0.012", "runware_air": "civitai:2@2"},
    {"id": "noobai-xl", "name": "NoobAI-XL", "family": "noobai"},  # no AIR id: not available on Runware
])


def used_today(user) -> int:
    return limits.daily_used(user_id=user.pk)


def stored_xmp(media_root, generation) -> str:
    with open(f"{media_root}/{generation.image}", "rb") as stored:
        image = Image.open(io.BytesIO(stored.read()))
        image.load()
    return image.info["xmp"].decode()


@pytest.mark.django_db
def test_n_images_are_n_generations_each_with_its_seed_charge_and_unit(client, alice, alice_key):
    response = generate(client, alice_key, {"prompt": "a fox", "n": 3, "seed": 7})
    assert response.status_code == 200, response.content
    body = response.json()
    rows = list(Generation.objects.order_by("created_at"))
    assert [row.seed for row in rows] == [7, 8, 9]
    assert len({row.batch_id for row in rows}) == 1 and rows[0].batch_id is not None
    assert [image["seed"] for image in body["images"]] == [7, 8, 9]
    assert [image["id"] for image in body["images"]] == [str(row.id) for row in rows]
    assert body["id"] == str(rows[0].id) and body["seed"] == 7 and body["image_url"] == body["images"][0]["image_url"]
    assert len({image["image_url"] for image in body["images"]}) == 3
    for image in body["images"]:
        assert client.get(image["image_url"]).status_code == 200
    assert LedgerEntry.objects.filter(user=alice, kind="charge").count() == 3
    assert Decimal(str(body["balance_usd"])) == Decimal("1") - 3 * PRICE == ledger.balance(user=alice)
    assert used_today(alice) == 3
    assert response["X-RateLimit-Remaining"] == "9"  # one request, however many images


@pytest.mark.django_db
def test_n_over_what_the_balance_covers_is_402_with_nothing_charged(client):
    poor = make_user("poor@example.com", balance="0.02")  # two images' worth
    from accounts.apikeys import create_api_key

    _, key = create_api_key(user=poor)
    response = generate(client, key, {"prompt": "a fox", "n": 3})
    assert response.status_code == 402 and error_of(response)["code"] == "INSUFFICIENT_BALANCE"
    assert ledger.balance(user=poor) == Decimal("0.02")
    assert not LedgerEntry.objects.filter(user=poor, kind="charge").exists()
    assert set(Generation.objects.values_list("status", flat=True)) == {"failed"}
    assert used_today(poor) == 0
    assert generate(client, key, {"prompt": "a fox", "n": 2}).status_code == 200


@pytest.mark.django_db
def test_n_over_the_daily_limit_is_429_and_gives_every_unit_back(client, alice, alice_key, settings):
    settings.ANIMEAPI_DAILY_LIMIT = 2
    response = generate(client, alice_key, {"prompt": "a fox", "n": 3})
    assert response.status_code == 429 and error_of(response)["code"] == "DAILY_LIMIT_EXCEEDED"
    assert "Retry-After" in response and used_today(alice) == 0
    assert not Generation.objects.exists() and ledger.balance(user=alice) == Decimal("1")


@pytest.mark.django_db
@pytest.mark.parametrize("body, code", [
    ({"prompt": "a fox", "n": 0}, "INVALID_N"),
    ({"prompt": "a fox", "n": 5}, "INVALID_N"),
    ({"prompt": "a fox", "n": "2"}, "INVALID_N"),
    ({"prompt": "a fox", "n": 2.0}, "INVALID_N"),
    ({"prompt": "a fox", "negative_prompt": "x" * 1001}, "INVALID_NEGATIVE_PROMPT"),
    ({"prompt": "a fox", "negative_prompt": ["hat"]}, "INVALID_NEGATIVE_PROMPT"),
    ({"prompt": "a fox", "model": "dall-e-3"}, "INVALID_MODEL"),
    ({"prompt": "a fox", "model": 3}, "INVALID_MODEL"),
])
def test_bad_n_negative_prompt_or_model_is_a_400_never_charged(client, alice, alice_key, body, code):
    response = generate(client, alice_key, body)
    assert response.status_code == 400 and error_of(response)["code"] == code
    assert not Generation.objects.exists() and ledger.balance(user=alice) == Decimal("1")
    assert used_today(alice) == 0


@pytest.mark.django_db
def test_negative_prompt_reaches_the_backend_after_the_family_one_and_shows_everywhere(
        client, alice_key, media_root, monkeypatch):
    seen = []

    class Recording(PreviewBackend):
        def generate(self, request, *, deadline):
            seen.append(request.negative_prompt)
            return super().generate(request, deadline=deadline)

    monkeypatch.setattr("generation.rendering.get_backend", lambda name=None: Recording())
    body = generate(client, alice_key, {"prompt": "a fox", "negative_prompt": "  hat, glasses "}).json()
    assert body["negative_prompt"] == "hat, glasses"
    assert seen[0].startswith("lowres, bad anatomy") and seen[0].endswith(", hat, glasses")
    generation = Generation.objects.get()
    assert generation.user_negative_prompt == "hat, glasses" and generation.negative_prompt == seen[0]
    history = client.get(f"/api/generations/{generation.id}", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert history["negative_prompt"] == "hat, glasses"
    listed = client.get("/api/generations", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()["results"][0]
    assert listed["negative_prompt"] == "hat, glasses" and listed["model_id"] == "animagine-xl-4"
    xmp = stored_xmp(media_root, generation)
    assert "<animeapi:userNegativePrompt>hat, glasses</animeapi:userNegativePrompt>" in xmp
    assert f"<animeapi:negativePrompt>{seen[0]}</animeapi:negativePrompt>" in xmp


@pytest.mark.django_db
def test_models_are_listed_and_the_chosen_one_sets_family_price_and_runware_model(client, alice, alice_key, settings,
                                                                                  monkeypatch):
    settings.GENERATION_MODELS = MODELS
    settings.GENERATION_BACKEND = "runware"
    settings.RUNWARE_API_KEY = "test-key"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice_key}"}
    listed = client.get("/api/models", **auth).json()["models"]
    assert [model["id"] for model in listed] == ["animagine-xl-4", "illustrious-xl"]  # noobai: no AIR id
    assert listed[0]["default"] and not listed[1]["default"]
    assert listed[1] | {"sizes": None} == {
        "id": "illustrious-xl", "name": "Illustrious-XL", "family": "illustrious", "default": False,
        "default_steps": 30, "default_cfg": 6.5, "sizes": None, "price_per_image_usd": 0.012}
    assert listed[1]["sizes"]["portrait"] == {"width": 832, "height": 1280}
    tasks = []

    def run_task(self, task, *, deadline):  # Runware's answer, minus the network
        tasks.append(task)
        raise BackendError("stop here", provider_code="test")

    monkeypatch.setattr("generation.backends.runware.RunwareBackend._run_task", run_task)
    response = generate(client, alice_key, {"prompt": "a fox", "model": "illustrious-xl"})
    assert response.status_code == 500  # the stub stops it; refunded
    assert tasks[0]["model"] == "civitai:2@2" and tasks[0]["steps"] == 30 and tasks[0]["CFGScale"] == 6.5
    # Illustrious' quality tags, not Animagine's, and its negative prompt.
    assert tasks[0]["positivePrompt"].endswith("masterpiece, best quality, absurdres")
    assert tasks[0]["negativePrompt"].startswith("worst quality, comic")
    generation = Generation.objects.get()
    assert generation.catalog_model == "illustrious-xl"
    assert ledger.balance(user=alice) == Decimal("1")
    refused = generate(client, alice_key, {"prompt": "a fox", "model": "noobai-xl"})
    assert refused.status_code == 400 and error_of(refused)["code"] == "INVALID_MODEL"


@pytest.mark.django_db
def test_a_models_price_is_what_its_images_cost(client, alice, alice_key, settings):
    settings.GENERATION_MODELS = MODELS
    body = generate(client, alice_key, {"prompt": "a fox", "model": "illustrious-xl", "n": 2}).json()
    assert body["model_id"] == "illustrious-xl" and body["cost_usd"] == 0.012
    assert ledger.balance(user=alice) == Decimal("1") - 2 * Decimal("0.012")


@pytest.mark.django_db
def test_async_n_queues_every_image(client, alice, alice_key):
    response = generate(client, alice_key, {"prompt": "a fox", "n": 2, "async": True})
    assert response.status_code == 202
    body = response.json()
    assert [image["id"] for image in body["images"]][0] == body["id"] and len(body["images"]) == 2
    for image in body["images"]:
        status = client.get(image["status_url"], HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
        assert status["status"] == "succeeded" and status["batch_id"]


# --- on a real worker: one batch task, one image of three fails ----------------------------------

@pytest.fixture
def odd_seed_worker(django_db_setup, media_root, monkeypatch, settings):
    """A Celery worker of this test's own whose backend fails odd seeds, on a private queue (so
    the session worker, if another test started it, never takes these tasks)."""
    assert settings.REDIS_URL, "worker tests need REDIS_URL"
    queue = f"batch-{os.getpid()}-{time.monotonic_ns()}"
    for task in (run_generation_task, run_generation_batch_task):
        monkeypatch.setattr(task, "apply_async", functools.partial(task.apply_async, queue=queue))
    db = connection.settings_dict
    name = f"{queue}@batch"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "--quiet", "worker", "-Q", queue, "-P", "threads", "-c", "2",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "error", "-n", name],
        env={**os.environ, "MEDIA_ROOT": media_root, "REDIS_URL": settings.REDIS_URL,
             "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
             "GENERATION_BACKEND": "tests.fault_backends.OddSeedFailsBackend"},
    )
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(destination=[name], timeout=0.5):
        assert worker.poll() is None, "the worker exited at start"
        assert time.monotonic() < deadline, "the worker did not answer in 60 s"
    yield worker
    worker.terminate()
    worker.wait(timeout=30)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_one_failed_image_of_three_is_refunded_and_gives_its_unit_back(client, odd_seed_worker, settings):
    settings.GENERATION_BACKEND = "tests.fault_backends.OddSeedFailsBackend"
    user = make_user("batch@example.com", balance="1")
    from accounts.apikeys import create_api_key

    _, key = create_api_key(user=user)
    response = generate(client, key, {"prompt": "a fox", "n": 3, "seed": 100})
    assert response.status_code == 200, response.content
    body = response.json()
    rows = list(Generation.objects.filter(user=user).order_by("seed"))
    assert [(row.seed, row.status) for row in rows] == [(100, "succeeded"), (101, "failed"), (102, "succeeded")]
    assert [image["seed"] for image in body["images"]] == [100, 102]
    assert body["failed"] == [{"id": str(rows[1].id), "code": "GENERATION_FAILED"}]
    for image in body["images"]:
        assert client.get(image["image_url"]).status_code == 200
    assert LedgerEntry.objects.filter(user=user, kind="charge").count() == 3
    assert LedgerEntry.objects.filter(user=user, kind="refund").count() == 1
    assert ledger.balance(user=user) == Decimal("1") - 2 * PRICE == Decimal(str(body["balance_usd"]))
    assert used_today(user) == 2
    assert rows[1].cost_usd == 0 and rows[0].cost_usd == PRICE


@pytest.mark.django_db
def test_a_diffusers_model_other_than_the_default_goes_to_its_own_queue(client, alice, alice_key, settings,
                                                                      monkeypatch):
    settings.GENERATION_MODELS = json.dumps([
        {"id": "animagine-xl-4", "family": "animagine4", "diffusers_model": "/models/a.safetensors"},
        {"id": "noobai-xl", "family": "noobai", "diffusers_model": "/models/n.safetensors"}])
    settings.GENERATION_BACKEND = "diffusers"
    sent = []

    def capture(task):
        def apply_async(args, **options):
            sent.append((task.name, options.get("queue")))
            raise ConnectionError("no broker in this test")  # the row is failed and refunded
        return apply_async

    for task in (run_generation_task, run_generation_batch_task):
        monkeypatch.setattr(task, "apply_async", capture(task))
    assert generate(client, alice_key, {"prompt": "a fox", "model": "noobai-xl", "n": 2}).status_code == 500
    assert generate(client, alice_key, {"prompt": "a fox"}).status_code == 500
    assert sent == [("generation.tasks.run_generation_batch", "generate.noobai-xl"),
                    ("generation.tasks.run_generation", None)]  # None: CELERY_TASK_ROUTES' `generate`
    assert ledger.balance(user=alice) == Decimal("1") and used_today(alice) == 0


def test_a_bad_models_setting_is_a_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    from generation import catalog

    for raw in ("not json", "[]", '[{"id": "Bad Id"}]', '[{"id": "a", "family": "sd15"}]', '[{"id": "a"}, {"id": "a"}]',
                '[{"id": "a", "price_usd": "0"}]', '[{"id": "a", "price_usd": "-1"}]', '[{"id": "a", "price_usd": "NaN"}]'):
        settings.GENERATION_MODELS = raw
        with pytest.raises(ImproperlyConfigured):
            catalog.all_models()
