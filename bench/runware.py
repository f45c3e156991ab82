"""Our overhead around Runware: the time we add to Runware's own answer time.

A stand-in for Runware's REST API runs in a separate process and answers at once with a ready
WEBP; it records its own handling time per taskUUID. Overhead is the caller's latency minus that
time: the client pool, JSON, base64, the URL fetch where there is one, our checks and, in the
pipeline rows, everything /api/generate does around the backend.

    .venv/bin/python bench/runware.py                  # the backend's generate() alone, no database
    DATABASE_URL=postgres://... .venv/bin/python bench/runware.py   # also the whole eager pipeline
"""

import argparse
import base64
import io
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.api import free_port, percentile  # noqa: E402 (needs the repository on sys.path)

PORTRAIT = (832, 1280)


def sample_webp():
    """A portrait WEBP about the size of a real one (a flat image would flatter the base64 path)."""
    from PIL import Image, ImageFilter

    rng = random.Random(8)
    small = Image.frombytes("RGB", (104, 160), bytes(rng.randrange(256) for _ in range(104 * 160 * 3)))
    image = small.resize(PORTRAIT, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(1))
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=90)
    return buffer.getvalue()


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog of 5 drops connections at 32 concurrent clients,
    # and each drop costs a 1 s SYN retransmit that is not ours to measure.
    request_queue_size = 128


def serve_standin(port, image, ready):
    """Runware's documented shapes, answered at once; GET /stats returns {taskUUID: ms handled}."""
    encoded = base64.b64encode(image).decode()
    handled_ms = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Runware's own front end does
        # Headers and body go out as separate writes; with Nagle on, the body waits for the
        # client's delayed ACK (40 ms on Linux), which would be the stand-in's delay, not ours.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def _send(self, body, content_type):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            started = time.perf_counter()
            [task] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            item = {"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": task["taskUUID"],
                    "seed": task["seed"], "cost": 0.0013}
            if task.get("safety"):
                item["NSFWContent"] = False
            if task["outputType"] == "URL":
                item["imageURL"] = f"http://127.0.0.1:{port}/image/{task['taskUUID']}.webp"
            else:
                item["imageBase64Data"] = encoded
            self._send(json.dumps({"data": [item]}).encode(), "application/json")
            self._record(task["taskUUID"], started)

        def do_GET(self):
            started = time.perf_counter()
            if self.path == "/stats":
                with lock:
                    body = json.dumps(handled_ms).encode()
                return self._send(body, "application/json")
            self._send(image, "image/webp")
            self._record(self.path.rsplit("/", 1)[-1].removesuffix(".webp"), started)

        def _record(self, task_uuid, started):
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                handled_ms[task_uuid] = handled_ms.get(task_uuid, 0.0) + elapsed

    server = StandInServer(("127.0.0.1", port), Handler)
    ready.set()
    server.serve_forever()


def run_level(call, concurrency, total):
    """Run `call()` `total` times from `concurrency` threads; returns [(taskUUID or key, ms)]."""
    results, failures = [], []
    lock = threading.Lock()

    def one(_):
        started = time.perf_counter()
        try:
            key = call()
        except Exception as exc:  # a failed call is counted, not allowed to stop the run
            with lock:
                failures.append(exc)
            return
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            results.append((key, elapsed))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(total)))
    return results, failures


def measured(call, concurrency, total):
    """Run a level and time it: (results, failures, wall seconds, our CPU ms per call)."""
    wall, cpu = time.perf_counter(), time.process_time()
    results, failures = run_level(call, concurrency, total)
    return results, failures, time.perf_counter() - wall, (time.process_time() - cpu) * 1000 / max(1, total)


def report(label, concurrency, results, failures, standin_ms, wall_s, cpu_ms):
    if not results:
        print(f"{label:<24} {concurrency:>5} {len(failures):>8}  every call failed: {failures[0]!r}"[:200])
        return
    latencies = [ms for _, ms in results]
    overheads = [ms - standin_ms.get(key, 0.0) for key, ms in results]
    print(f"{label:<24} {concurrency:>5} {len(results) + len(failures):>8} {len(results) / wall_s:>6.0f} "
          f"{statistics.median(latencies):>7.2f} {percentile(latencies, 99):>7.2f} "
          f"{statistics.median(overheads):>8.2f} {percentile(overheads, 99):>8.2f} {cpu_ms:>8.2f} {len(failures):>6}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="calls per row")
    parser.add_argument("--levels", default="1,32")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    image = sample_webp()
    port = free_port()
    ready = multiprocessing.get_context("fork").Event()
    standin = multiprocessing.get_context("fork").Process(target=serve_standin, args=(port, image, ready), daemon=True)
    standin.start()
    ready.wait(10)

    media = tempfile.mkdtemp(prefix="bench-runware-media-")
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "GENERATION_BACKEND": "runware",
        "RUNWARE_API_KEY": "bench-key",
        "RUNWARE_API_URL": f"http://127.0.0.1:{port}/v1",
        "MEDIA_ROOT": media,
        "ANIMEAPI_RATE_LIMIT_PER_MINUTE": "100000000",
        "ANIMEAPI_DAILY_LIMIT": "100000000",
        "LOG_LEVEL": "WARNING",
    })
    import django

    django.setup()
    import httpx

    from generation.backends import get_backend, runware
    from generation.backends.base import ImageRequest

    def standin_ms():
        return httpx.get(f"http://127.0.0.1:{port}/stats").json()

    backend = get_backend("runware")
    print(f"Runware backend against a local stand-in answering at once; WEBP {len(image) // 1024} KiB, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print("ovh = latency minus the stand-in's own handling time; cpu = this process's CPU time per call")
    print(f"{'path':<24} {'conc.':>5} {'requests':>8} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'ovh p50':>8} {'ovh p99':>8} {'cpu ms':>8} {'errors':>6}")

    request = ImageRequest(prompt="1girl, blue hair, masterpiece", negative_prompt="lowres, bad anatomy",
                           width=PORTRAIT[0], height=PORTRAIT[1], allow_nsfw=False, seed=12345)

    def backend_call():
        return backend.generate(request, deadline=time.monotonic() + 60).details["taskUUID"]

    for output_type in ("base64Data", "URL"):
        runware.RunwareBackend.output_type = output_type
        for concurrency in levels:
            run_level(backend_call, concurrency, min(args.requests, 50))  # fill the connection pool
            results, failures, wall, cpu = measured(backend_call, concurrency, args.requests)
            report(f"generate() {output_type}", concurrency, results, failures, standin_ms(), wall, cpu)
    runware.RunwareBackend.output_type = "base64Data"

    try:
        if os.environ.get("DATABASE_URL"):
            bench_pipeline(levels, args.requests, standin_ms)
        else:
            print("(set DATABASE_URL to add the whole eager /api/generate pipeline)")
    finally:
        shutil.rmtree(media, ignore_errors=True)
        standin.terminate()


def bench_pipeline(levels, total, standin_ms):
    """POST /api/generate through Django's test client, tasks eager in-process."""
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from accounts.apikeys import create_api_key
    from accounts.models import User
    from billing import ledger
    from config.celery import app as celery_app
    from generation.models import Generation

    setup_test_environment()
    celery_app.conf.task_always_eager = True
    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(email="bench-runware@example.com")
    ledger.credit(user=user, amount="100000", kind=ledger.Kind.ADJUSTMENT, reference=f"bench-runware:{time.time_ns()}")
    _, key = create_api_key(user=user, name=f"bench runware {time.time_ns()}")
    local = threading.local()

    allow_nsfw = {"value": True}

    def pipeline_call():
        client = getattr(local, "client", None) or Client()
        local.client = client
        request_id = f"bench-runware-{uuid.uuid4()}"
        try:
            response = client.post("/api/generate",
                                   data={"prompt": "anime girl with blue hair", "allowNSFW": allow_nsfw["value"]},
                                   content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
                                   HTTP_X_REQUEST_ID=request_id)
        finally:
            # What a real server does at the end of each request (the test client does not):
            # hand the thread's connection back to the pool.
            connection.close()
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code} {response.content[:200]!r}")
        return request_id

    # allowNSFW true (the default), then false: the image classifier runs on every image.
    for nsfw_allowed in (True, False):
        allow_nsfw["value"] = nsfw_allowed
        for concurrency in levels:
            run_level(pipeline_call, concurrency, min(total, 50))  # connections, caches, the client pool
            results, failures, wall, cpu = measured(pipeline_call, concurrency, total)
            task_of = dict(Generation.objects.filter(request_id__in=[r for r, _ in results])
                           .values_list("request_id", "details__taskUUID"))
            handled = standin_ms()
            by_request = {request_id: handled.get(task_uuid, 0.0) for request_id, task_uuid in task_of.items()}
            report(f"POST allowNSFW={str(nsfw_allowed).lower()}", concurrency, results, failures, by_request, wall,
                   cpu)
    classifier_alone()


def classifier_alone(runs: int = 20) -> None:
    """The image classifier by itself, on the stand-in's portrait WEBP: its share of allowNSFW=false."""
    from generation import safety

    if not safety.classifier_installed():
        print("image classifier: not installed (the [safety] extra)")
        return
    from generation.safety import nudenet

    image = sample_webp()
    nudenet.detect(image)  # load the model
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(runs):
        nudenet.detect(image)
    print(f"image classifier alone ({nudenet.MODEL}, portrait): {(time.perf_counter() - wall) * 1000 / runs:.1f} ms "
          f"wall, {(time.process_time() - cpu) * 1000 / runs:.1f} ms CPU per image")


if __name__ == "__main__":
    main()
