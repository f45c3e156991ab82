"""The image safety check behind allowNSFW=false: the backend's own flag, or NudeNet's detector (the
`[safety]` extra) on the finished image, for every backend."""

import importlib
import os
from decimal import Decimal
from http import HTTPStatus

import pytest


def _require(module: str):
    # Under CI the Makefile installs the [safety] extra: a missing package fails the run, never skips.
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


_require("nudenet")
_require("onnxruntime")

from billing import ledger
from generation import backends, safety, worker
from generation.backends.base import BackendImage, ImageRequest
from generation.backends.preview import PreviewBackend
from generation.models import Generation
from generation.safety import nudenet
from tests.conftest import error_of, generate
from tests.test_api_generate import PRICE

EXPOSED = {"class": "FEMALE_BREAST_EXPOSED", "score": 0.91, "box": [10, 20, 30, 40]}


class SeedRecordingBackend(PreviewBackend):
    """The preview backend, remembering the seed of every image it made."""

    def __init__(self, flags=()):
        self.seeds, self.flags = [], list(flags)

    def generate(self, request, *, deadline):
        self.seeds.append(request.seed)
        image = super().generate(request, deadline=deadline)
        image.nsfw = self.flags.pop(0) if self.flags else False
        return image


@pytest.fixture
def backend(monkeypatch):
    backend = SeedRecordingBackend()
    monkeypatch.setattr(backends, "get_backend", lambda name=None: backend)
    monkeypatch.setattr("generation.rendering.get_backend", lambda name=None: backend)
    return backend


@pytest.fixture
def detections(monkeypatch):
    """Replace NudeNet's answers: each call pops the next list (the last one repeats)."""
    answers, images = [], []

    def fake_detect(data):
        images.append(data)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(nudenet, "detect", fake_detect)
    fake_detect.answers, fake_detect.images = answers, images
    return fake_detect


def _preview_webp(seed=1) -> bytes:
    request = ImageRequest(prompt="a girl reading under a tree", negative_prompt="", width=832, height=1280,
                           allow_nsfw=False, seed=seed)
    return PreviewBackend().generate(request, deadline=float("inf")).data


def test_nudenet_is_loaded_once_and_passes_a_plain_image():
    assert safety.classifier_installed()
    assert nudenet.detector() is nudenet.detector()

    found = nudenet.detect(_preview_webp())

    assert isinstance(found, list)
    assert nudenet.nsfw_labels(found, threshold=0.5) == []
    assert not safety.is_flagged(BackendImage(data=_preview_webp(), seed=1))


@pytest.mark.django_db
def test_a_clean_image_is_returned_with_the_classifiers_time_recorded(client, alice, alice_key, backend):
    response = generate(client, alice_key, {"prompt": "a girl reading under a tree", "allowNSFW": False})

    assert response.status_code == HTTPStatus.OK, response.content
    assert ledger.balance(user=alice) == Decimal("1") - PRICE
    details = Generation.objects.get(user=alice).details
    assert details["safety_model"] == "nudenet-320n"
    assert 0 < details["safety_ms"] < 5000
    assert "safety_labels" not in details
    assert len(backend.seeds) == 1


@pytest.mark.django_db
def test_an_exposed_detection_withholds_the_image_and_refunds(client, alice, alice_key, backend, detections):
    detections.answers.append([EXPOSED])

    response = generate(client, alice_key, {"prompt": "a girl at the beach", "allowNSFW": False})

    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert error_of(response)["code"] == "NSFW_CONTENT_BLOCKED"
    assert ledger.balance(user=alice) == Decimal("1") == ledger.ledger_sum(user=alice)
    generation = Generation.objects.get(user=alice)
    assert (generation.status, generation.image) == (Generation.Status.FAILED, "")
    # Retried once with a new seed, and the classifier saw both images.
    assert len(backend.seeds) == 2 and backend.seeds[0] != backend.seeds[1]
    assert len(detections.images) == 2


@pytest.mark.django_db
def test_a_flagged_first_image_is_replaced_by_a_clean_one(client, alice, alice_key, backend, detections):
    detections.answers.extend([[EXPOSED], []])

    response = generate(client, alice_key, {"prompt": "a girl at the beach", "allowNSFW": False})

    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["seed"] == backend.seeds[1] != backend.seeds[0]
    assert ledger.balance(user=alice) == Decimal("1") - PRICE


@pytest.mark.django_db
@pytest.mark.parametrize("found", [
    [{"class": "FEMALE_BREAST_COVERED", "score": 0.99, "box": [0, 0, 1, 1]}],
    [{"class": "FACE_FEMALE", "score": 0.95, "box": [0, 0, 1, 1]},
     {"class": "BELLY_EXPOSED", "score": 0.9, "box": [0, 0, 1, 1]}],
    [{**EXPOSED, "score": 0.49}],
])
def test_covered_harmless_or_unsure_detections_pass(client, alice_key, backend, detections, found):
    detections.answers.append(found)
    assert generate(client, alice_key, {"prompt": "a girl", "allowNSFW": False}).status_code == HTTPStatus.OK


@pytest.mark.django_db
def test_the_threshold_is_a_setting(client, alice, alice_key, backend, detections, settings):
    settings.SAFETY_THRESHOLD = 0.3
    detections.answers.append([{**EXPOSED, "class": "MALE_GENITALIA_EXPOSED", "score": 0.35}])

    response = generate(client, alice_key, {"prompt": "a boy", "allowNSFW": False})

    assert error_of(response)["code"] == "NSFW_CONTENT_BLOCKED"


@pytest.mark.django_db
def test_allow_nsfw_true_never_runs_the_classifier(client, alice_key, backend, detections):
    detections.answers.append([EXPOSED])
    assert generate(client, alice_key, {"prompt": "a girl"}).status_code == HTTPStatus.OK
    assert detections.images == []


@pytest.mark.django_db
def test_the_backends_own_flag_blocks_with_or_without_the_classifier(client, alice, alice_key, backend,
                                                                     detections, monkeypatch):
    detections.answers.append([])
    backend.flags = [True, True]
    assert error_of(generate(client, alice_key, {"prompt": "a", "allowNSFW": False}))["code"] == "NSFW_CONTENT_BLOCKED"
    assert detections.images == []  # a flagged image needs no second opinion

    monkeypatch.setattr(safety, "classifier_installed", lambda: False)
    backend.flags = [True, False]
    assert generate(client, alice_key, {"prompt": "a", "allowNSFW": False}).status_code == HTTPStatus.OK
    assert detections.images == []
    assert "safety_ms" not in Generation.objects.filter(status="succeeded").get().details


@pytest.mark.django_db
def test_an_unreadable_image_fails_closed_and_is_refunded(client, alice, alice_key, monkeypatch):
    class GarbageBackend(PreviewBackend):
        def generate(self, request, *, deadline):
            return BackendImage(data=b"not an image", seed=request.seed, nsfw=False)

    monkeypatch.setattr("generation.rendering.get_backend", lambda name=None: GarbageBackend())
    response = generate(client, alice_key, {"prompt": "a", "allowNSFW": False})

    assert error_of(response)["code"] == "GENERATION_FAILED"
    assert ledger.balance(user=alice) == Decimal("1")
    assert "invalid image" in Generation.objects.get(user=alice).error_detail


def test_the_worker_loads_the_classifier_at_start(settings, monkeypatch):
    settings.GENERATION_BACKEND = "preview"
    nudenet.detector.cache_clear()

    worker.load_generation_model()

    assert nudenet.detector.cache_info().currsize == 1
