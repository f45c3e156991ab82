"""The Runware backend, through POST /api/generate, against a local stand-in for Runware's REST API.

The stand-in speaks the documented shapes: a JSON array of tasks in, `{"data": [...]}` or
`{"errors": [...]}` out, images as base64Data or as a URL it serves itself.
"""

import base64
import io
import json
import threading
import time
import uuid
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from billing import ledger
from generation import backends
from generation.backends import runware
from generation.backends.base import BackendError, ImageRequest
from generation.models import Generation
from tests.conftest import error_of, generate

API_KEY = "rw-test-key"
MODEL = "civitai:1188071@1408658"
SCHEDULER = "EulerAncestralDiscreteScheduler"
SIZES = {"portrait": (832, 1280), "square": (1024, 1024), "landscape": (1280, 832)}


def webp(size, colour=(200, 120, 160)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="WEBP")
    return buffer.getvalue()


def png(size):
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping must not hold up the test's teardown
    request_queue_size = 64  # the default of 5 drops connections when many threads connect at once


class FakeRunware:
    """What the stand-in answers, and what it was sent.

    `script` holds one entry per coming POST (then it answers successfully): an int status for an
    error answer, a dict for a verbatim JSON body, or ("sleep", seconds) to hang.
    """

    def __init__(self):
        self.requests = []  # (headers, tasks) per POST
        self.script = []
        self.image = None  # bytes; None means a WEBP of the requested size
        self.image_url = None  # a URL to answer with instead of one of ours
        self.nsfw = []  # NSFWContent per successful answer, when the check was asked for; then False
        self.always_flag = False  # answer NSFWContent=true even when no check was asked for
        self.reports_check = True  # False: leave NSFWContent out even when the check was asked for
        self.cost = 0.0013
        self.released = threading.Event()
        self.served_images = {}
        self.lock = threading.Lock()
        self.server = StandInServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    @property
    def tasks(self):
        return [tasks[0] for _, tasks in self.requests]

    def _answer(self, task):
        width, height = task["width"], task["height"]
        data = self.image if self.image is not None else webp((width, height))
        item = {"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": str(uuid.uuid4()),
                "seed": task["seed"], "cost": self.cost}
        if (task.get("safety", {}).get("checkContent") and self.reports_check) or self.always_flag:
            item["NSFWContent"] = self.nsfw.pop(0) if self.nsfw else self.always_flag
        if self.image_url:
            item["imageURL"] = self.image_url
        elif task["outputType"] == "URL":
            name = f"/image/{item['imageUUID']}.webp"
            self.served_images[name] = data
            item["imageURL"] = self.base + name
        else:
            item["imageBase64Data"] = base64.b64encode(data).decode()
        return {"data": [item]}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=()):
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self):
                tasks = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append((dict(self.headers), tasks))
                    step = fake.script.pop(0) if fake.script else None
                if isinstance(step, tuple) and step[0] == "sleep":
                    fake.released.wait(step[1])
                    return
                if isinstance(step, int):
                    errors = {"errors": [{"code": f"status{step}", "message": f"stand-in says {step}",
                                          "taskType": "imageInference", "taskUUID": tasks[0]["taskUUID"]}]}
                    return self._send(step, errors, [("Retry-After", "0")] if step == 429 else [])
                if isinstance(step, dict):
                    return self._send(200, step)
                self._send(200, fake._answer(tasks[0]))

            def do_GET(self):
                data = fake.served_images.get(self.path)
                if data is None:
                    return self._send(404, {"errors": [{"code": "notFound", "message": self.path}]})
                self.send_response(200)
                self.send_header("Content-Type", "image/webp")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def fake_runware(settings, monkeypatch):
    fake = FakeRunware()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    settings.GENERATION_BACKEND = "runware"
    settings.RUNWARE_API_KEY = API_KEY
    settings.RUNWARE_API_URL = fake.url
    settings.RUNWARE_MODEL = MODEL
    settings.RUNWARE_STEPS = 28
    settings.RUNWARE_CFG_SCALE = 5.0
    settings.RUNWARE_SCHEDULER = SCHEDULER
    settings.RUNWARE_MAX_RETRIES = 3
    settings.GENERATION_TIMEOUT_S = 5
    monkeypatch.setattr(runware, "BACKOFF_BASE_S", 0.01)
    backends.get_backend.cache_clear()
    yield fake
    backends.get_backend.cache_clear()
    fake.released.set()
    fake.server.shutdown()
    fake.server.server_close()


def assert_failed_and_refunded(response, alice, *, code="GENERATION_FAILED", status=HTTPStatus.INTERNAL_SERVER_ERROR):
    assert response.status_code == status, response.content
    assert error_of(response)["code"] == code
    assert ledger.balance(user=alice) == Decimal("1")
    generation = Generation.objects.get(user=alice)
    assert generation.status == Generation.Status.FAILED
    assert generation.error_code == code
    assert generation.cost_usd == Decimal("0")
    return generation


def fetch_image(client, url):
    response = client.get("/" + url.split("://", 1)[1].split("/", 1)[1])
    assert response.status_code == HTTPStatus.OK
    return Image.open(io.BytesIO(b"".join(response.streaming_content)))


@pytest.mark.django_db
@pytest.mark.parametrize("orientation", ["portrait", "square", "landscape"])
def test_the_task_sent_is_runwares_documented_shape(client, alice, alice_key, fake_runware, orientation):
    response = generate(client, alice_key, {"prompt": "anime girl with blue hair", "orientation": orientation})

    assert response.status_code == HTTPStatus.OK, response.content
    [(headers, tasks)] = fake_runware.requests
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["Content-Type"] == "application/json"
    generation = Generation.objects.get(user=alice)
    [task] = tasks
    assert uuid.UUID(task["taskUUID"]).version == 4
    width, height = SIZES[orientation]
    assert task == {
        "taskType": "imageInference",
        "taskUUID": task["taskUUID"],
        "positivePrompt": response.json()["enhanced_prompt"],
        "negativePrompt": generation.negative_prompt,
        "width": width,
        "height": height,
        "model": MODEL,
        "steps": 28,
        "CFGScale": 5.0,
        "scheduler": SCHEDULER,
        "seed": generation.seed or runware.RUNWARE_SEED_FOR_ZERO,
        "outputType": "base64Data",
        "outputFormat": "WEBP",
        "numberResults": 1,
        "includeCost": True,
    }
    assert generation.negative_prompt
    assert fetch_image(client, response.json()["image_url"]).size == (width, height)


@pytest.mark.django_db
def test_the_prompt_is_sent_exactly_as_given_when_enhance_is_off(client, alice_key, fake_runware):
    prompt = "masterpiece, best quality, 1girl, blue_hair, (forest:1.2), 魔法"
    response = generate(client, alice_key, {"prompt": prompt, "enhance": False})

    assert response.status_code == HTTPStatus.OK
    assert fake_runware.tasks[0]["positivePrompt"] == prompt == response.json()["enhanced_prompt"]


@pytest.mark.django_db
def test_allow_nsfw_false_asks_for_runwares_content_check(client, alice_key, fake_runware):
    response = generate(client, alice_key, {"prompt": "a cat", "allowNSFW": False})

    assert response.status_code == HTTPStatus.OK
    assert fake_runware.tasks[0]["safety"] == {"checkContent": True}
    assert "nsfw" in fake_runware.tasks[0]["negativePrompt"]


@pytest.mark.django_db
def test_success_records_cost_and_parameters(client, alice, alice_key, fake_runware):
    response = generate(client, alice_key, {"prompt": "a cat"})

    assert response.status_code == HTTPStatus.OK
    assert response.json()["balance_usd"] == pytest.approx(0.991)
    generation = Generation.objects.get(user=alice)
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.backend == "runware"
    assert generation.model == MODEL
    assert generation.backend_cost_usd == Decimal("0.0013")
    assert generation.details["taskUUID"] == fake_runware.tasks[0]["taskUUID"]
    assert generation.details | {"taskUUID": "", "imageUUID": ""} == {
        "backend": "runware", "taskUUID": "", "imageUUID": "", "model": MODEL, "steps": 28, "CFGScale": 5.0,
        "scheduler": SCHEDULER, "outputType": "base64Data", "tries": 1,
    }


@pytest.mark.django_db
def test_an_image_url_answer_is_fetched_and_stored_by_us(client, alice, alice_key, fake_runware, monkeypatch):
    monkeypatch.setattr(runware.RunwareBackend, "output_type", "URL")
    response = generate(client, alice_key, {"prompt": "a cat", "orientation": "square"})

    assert response.status_code == HTTPStatus.OK, response.content
    assert fake_runware.tasks[0]["outputType"] == "URL"
    assert response.json()["image_url"].startswith("http://testserver/media/images/")
    image = fetch_image(client, response.json()["image_url"])
    assert (image.format, image.size) == ("WEBP", (1024, 1024))


@pytest.mark.django_db
def test_a_wrong_size_image_is_reencoded_at_the_exact_size(client, alice, alice_key, fake_runware):
    fake_runware.image = png((640, 640))
    response = generate(client, alice_key, {"prompt": "a cat", "orientation": "landscape"})

    assert response.status_code == HTTPStatus.OK
    image = fetch_image(client, response.json()["image_url"])
    assert (image.format, image.size) == ("WEBP", (1280, 832))


@pytest.mark.django_db
@pytest.mark.parametrize("status", [429, 502, 503])
def test_a_transient_failure_is_retried_with_a_new_task_uuid(client, alice, alice_key, fake_runware, status):
    fake_runware.script = [status]
    response = generate(client, alice_key, {"prompt": "a cat"})

    assert response.status_code == HTTPStatus.OK, response.content
    first, second = fake_runware.tasks
    assert first["taskUUID"] != second["taskUUID"]
    assert uuid.UUID(second["taskUUID"]).version == 4
    assert {k: v for k, v in first.items() if k != "taskUUID"} == {k: v for k, v in second.items() if k != "taskUUID"}
    assert ledger.balance(user=alice) == Decimal("0.991")
    assert Generation.objects.get(user=alice).details["tries"] == 2


@pytest.mark.django_db
def test_persistent_500s_exhaust_the_retries_and_refund(client, alice, alice_key, charlie, fake_runware):
    fake_runware.script = [500] * 10
    response = generate(client, alice_key, {"prompt": "a cat"})

    generation = assert_failed_and_refunded(response, alice)
    assert len(fake_runware.requests) == 4  # the first try and RUNWARE_MAX_RETRIES=3 more
    assert len({task["taskUUID"] for task in fake_runware.tasks}) == 4
    assert "status500" in generation.error_detail
    assert "stand-in says" not in response.content.decode()
    assert ledger.balance(user=charlie) == Decimal("1")
    assert not Generation.objects.filter(user=charlie).exists()


@pytest.mark.django_db
def test_an_errors_array_in_a_200_fails_at_once_with_runwares_code(client, alice, alice_key, fake_runware):
    fake_runware.script = [{"errors": [{"code": "invalidPositivePrompt", "message": "Invalid value for positivePrompt",
                                        "parameter": "positivePrompt", "taskType": "imageInference"}]}]
    response = generate(client, alice_key, {"prompt": "a cat"})

    generation = assert_failed_and_refunded(response, alice)
    assert len(fake_runware.requests) == 1
    assert "invalidPositivePrompt" in generation.error_detail
    assert "Invalid value for positivePrompt" in generation.error_detail
    assert "positivePrompt" not in response.content.decode()


@pytest.mark.django_db
def test_a_4xx_with_errors_is_not_retried(client, alice, alice_key, fake_runware):
    fake_runware.script = [401]
    response = generate(client, alice_key, {"prompt": "a cat"})

    generation = assert_failed_and_refunded(response, alice)
    assert len(fake_runware.requests) == 1
    assert "status401" in generation.error_detail


@pytest.mark.django_db
def test_an_answer_that_never_comes_times_out_within_the_deadline(client, alice, alice_key, fake_runware, settings):
    settings.GENERATION_TIMEOUT_S = 1.5
    fake_runware.script = [("sleep", 30)]
    started = time.monotonic()
    response = generate(client, alice_key, {"prompt": "a cat"})

    assert time.monotonic() - started < 3
    generation = assert_failed_and_refunded(response, alice)
    assert len(fake_runware.requests) == 1
    assert "timed out" in generation.error_detail and "[timeout]" in generation.error_detail


@pytest.mark.django_db
def test_an_unreachable_runware_is_retried_then_fails(client, alice, alice_key, fake_runware, settings):
    fake_runware.server.shutdown()
    fake_runware.server.server_close()
    response = generate(client, alice_key, {"prompt": "a cat"})

    generation = assert_failed_and_refunded(response, alice)
    assert "after 4 tries" in generation.error_detail and "[connection]" in generation.error_detail


@pytest.mark.django_db
def test_an_nsfw_image_is_retried_with_a_new_seed_then_blocked(client, alice, alice_key, fake_runware):
    fake_runware.nsfw = [True, True]
    response = generate(client, alice_key, {"prompt": "a cat", "allowNSFW": False})

    assert_failed_and_refunded(response, alice, code="NSFW_CONTENT_BLOCKED", status=HTTPStatus.UNPROCESSABLE_ENTITY)
    first, second = fake_runware.tasks
    assert first["seed"] != second["seed"]
    assert first["taskUUID"] != second["taskUUID"]
    assert not list(Generation.objects.exclude(image=""))


@pytest.mark.django_db
def test_an_nsfw_image_then_a_clean_one_succeeds(client, alice, alice_key, fake_runware):
    fake_runware.nsfw = [True, False]
    response = generate(client, alice_key, {"prompt": "a cat", "allowNSFW": False})

    assert response.status_code == HTTPStatus.OK
    assert len(fake_runware.requests) == 2
    assert Generation.objects.get(user=alice).seed == fake_runware.tasks[1]["seed"]


@pytest.mark.django_db
def test_an_nsfw_image_is_returned_when_allowed(client, alice, alice_key, fake_runware):
    fake_runware.always_flag = True
    response = generate(client, alice_key, {"prompt": "a cat", "allowNSFW": True})

    assert response.status_code == HTTPStatus.OK
    assert len(fake_runware.requests) == 1
    assert "safety" not in fake_runware.tasks[0]


@pytest.mark.django_db
def test_a_missing_content_check_result_is_never_returned_as_safe(client, alice, alice_key, fake_runware):
    fake_runware.reports_check = False
    response = generate(client, alice_key, {"prompt": "a cat", "allowNSFW": False})

    generation = assert_failed_and_refunded(response, alice)
    assert "nsfw_check_missing" in generation.error_detail


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "https://evil.example.com/image.webp",
    "http://im.runware.ai/image/ws/2/ii/x.webp",  # an allowed host, but not over https
    "https://user:pass@im.runware.ai/x.webp",
    "file:///etc/passwd",
])
def test_an_image_url_on_a_disallowed_host_is_refused(client, alice, alice_key, fake_runware, url):
    fake_runware.image_url = url
    response = generate(client, alice_key, {"prompt": "a cat"})

    generation = assert_failed_and_refunded(response, alice)
    assert "image_host_not_allowed" in generation.error_detail


@pytest.mark.django_db
def test_an_oversized_image_download_is_refused(client, alice, alice_key, fake_runware, monkeypatch):
    monkeypatch.setattr(runware.RunwareBackend, "output_type", "URL")
    monkeypatch.setattr(runware, "MAX_IMAGE_BYTES", 1000)
    response = generate(client, alice_key, {"prompt": "a cat"})

    generation = assert_failed_and_refunded(response, alice)
    assert "too_large" in generation.error_detail


@pytest.mark.django_db
def test_an_answer_without_our_task_fails(client, alice, alice_key, fake_runware):
    fake_runware.script = [{"data": [{"taskType": "imageInference", "taskUUID": str(uuid.uuid4()),
                                      "imageBase64Data": base64.b64encode(webp((832, 1280))).decode()}]}]
    response = generate(client, alice_key, {"prompt": "a cat"})

    generation = assert_failed_and_refunded(response, alice)
    assert "no_result" in generation.error_detail


@pytest.mark.django_db
def test_backend_refuses_to_start_a_try_after_the_deadline(fake_runware):
    backend = backends.get_backend("runware")
    request = ImageRequest(prompt="a cat", negative_prompt="", width=832, height=1280, allow_nsfw=True, seed=1)

    with pytest.raises(BackendError) as failure:
        backend.generate(request, deadline=time.monotonic() + 0.1)

    assert failure.value.provider_code == "deadline"
    assert not fake_runware.requests


def test_one_client_is_shared_by_concurrent_generations(fake_runware):
    backend = backends.get_backend("runware")
    assert backends.get_backend("runware") is backend
    request = ImageRequest(prompt="a cat", negative_prompt="", width=832, height=1280, allow_nsfw=True, seed=7)
    results, errors = [], []

    def run():
        try:
            results.append(backend.generate(request, deadline=time.monotonic() + 10))
        except BackendError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(results) == 16
    assert len({image.details["taskUUID"] for image in results}) == 16
    assert all(image.cost_usd == Decimal("0.0013") and image.seed == 7 for image in results)


@pytest.mark.django_db
def test_a_data_uri_answer_is_understood(client, alice, alice_key, fake_runware):
    def answer_with_data_uri(task):
        encoded = base64.b64encode(webp((task["width"], task["height"]))).decode()
        return {"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"],
                          "imageDataURI": f"data:image/webp;base64,{encoded}"}]}

    fake_runware._answer = answer_with_data_uri
    response = generate(client, alice_key, {"prompt": "a cat"})

    assert response.status_code == HTTPStatus.OK
    assert fetch_image(client, response.json()["image_url"]).size == (832, 1280)
    assert Generation.objects.get(user=alice).backend_cost_usd is None


def test_seed_zero_is_sent_as_a_seed_runware_accepts(fake_runware):
    request = ImageRequest(prompt="a cat", negative_prompt="", width=832, height=1280, allow_nsfw=True, seed=0)

    image = backends.get_backend("runware").generate(request, deadline=time.monotonic() + 10)

    assert fake_runware.tasks[0]["seed"] == runware.RUNWARE_SEED_FOR_ZERO >= 1
    assert image.seed == runware.RUNWARE_SEED_FOR_ZERO


@pytest.mark.django_db
def test_n_images_are_n_concurrent_tasks_each_with_its_seed(client, alice, alice_key, fake_runware):
    body = generate(client, alice_key, {"prompt": "a cat", "n": 3, "seed": 40}).json()
    assert sorted(task["seed"] for task in fake_runware.tasks) == [40, 41, 42]
    assert len({task["taskUUID"] for task in fake_runware.tasks}) == 3
    assert [image["seed"] for image in body["images"]] == [40, 41, 42]
    assert ledger.balance(user=alice) == Decimal("1") - 3 * Decimal("0.009")
