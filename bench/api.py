"""The API's own overhead and throughput, on PostgreSQL + Redis with a real Celery worker.

Starts gunicorn (gthread) and a Celery worker on this machine, creates a user with a key, then
drives POST /api/generate with 1, 8 and 32 concurrent keep-alive clients. Overhead is the
client's latency minus the backend's own time (Generation.generate_ms), so it is what we add:
auth, limits, the ledger, the queue round trip, WEBP check, storage and the answer.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/api.py [--backend instant|preview]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil  # with the test tools (accelerate's dependency), as `make bench` installs them

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BACKENDS = {"instant": "bench.instant.InstantBackend", "preview": "preview"}


def ensure_database(url):
    """A fresh PostgreSQL database for the benchmark: numbers never depend on an earlier run's
    rows, nor on its schema."""
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(url)
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                         password=db["PASSWORD"] or None, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_cpu_seconds(roots: dict) -> dict:
    """CPU seconds used so far by each part of the serving side: `roots` (name -> gunicorn, the
    Celery worker) with their children, PostgreSQL and Redis. On a machine shared with other
    work, CPU per request is a steadier figure than latency."""
    groups = {name: [] for name in (*roots, "postgres", "redis")}
    for name, root in roots.items():
        try:
            parent = psutil.Process(root.pid)
            groups[name] += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for process in psutil.process_iter(["name"]):
        name = process.info["name"] or ""
        if name.startswith("postgres"):
            groups["postgres"].append(process)
        elif name == "redis-server":
            groups["redis"].append(process)
    seconds = {}
    for name, processes in groups.items():
        seconds[name] = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                seconds[name] += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    return seconds


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="instant")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,8,32")
    args = parser.parse_args()
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} must point at PostgreSQL / Redis (make bench sets both)")

    ensure_database(os.environ["DATABASE_URL"])
    media = tempfile.mkdtemp(prefix="bench-media-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "GENERATION_BACKEND": BACKENDS[args.backend],
        "MEDIA_ROOT": media,
        "ANIMEAPI_RATE_LIMIT_PER_MINUTE": "100000000",
        "ANIMEAPI_DAILY_LIMIT": "100000000",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "0", "SECRET_KEY": "bench-only",  # as served in production: DEBUG logs every SQL query
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.apikeys import create_api_key
    from accounts.models import User
    from billing import ledger
    from generation.models import Generation

    user, _ = User.objects.get_or_create(email="bench@example.com")
    ledger.credit(user=user, amount="100000", kind=ledger.Kind.ADJUSTMENT, reference=f"bench:{time.time_ns()}")
    _, key = create_api_key(user=user, name=f"bench {time.time_ns()}")

    port = free_port()
    venv_bin = Path(sys.executable).parent
    web = subprocess.Popen(
        [str(venv_bin / "gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{port}", "-k", "gthread",
         "--workers", "2", "--threads", "32", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    worker = subprocess.Popen(
        [str(venv_bin / "celery"), "-A", "config", "worker", "-Q", "generate", "-P", "threads", "-c", "32",
         "--without-gossip", "--without-mingle", "-l", "warning", "-n", f"bench-{os.getpid()}@%h"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.post(f"{base}/api/generate", headers=headers, json={"prompt": "warm up"}, timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit("the server or worker did not come up")
            time.sleep(0.5)

        print(f"POST /api/generate, backend={args.backend}, gunicorn gthread 2x32, celery threads 32, "
              f"{os.cpu_count()} cores")
        print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'overhead p50':>12} {'overhead p99':>12} {'server CPU ms/req':>17} {'errors':>6}")
        cpu_parts = []
        for clients in [int(level) for level in args.levels.split(",")]:
            results, errors = [], []
            per_client = max(1, args.requests // clients)
            lock = threading.Lock()

            def drive(index):
                with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                    for i in range(per_client):
                        request_id = f"bench-{clients}-{index}-{i}-{time.time_ns()}"
                        start = time.perf_counter()
                        response = client.post("/api/generate", json={"prompt": "anime girl with blue hair"},
                                               headers={"X-Request-ID": request_id})
                        elapsed = (time.perf_counter() - start) * 1000
                        with lock:
                            (results if response.status_code == 200 else errors).append((request_id, elapsed))

            threads = [threading.Thread(target=drive, args=(n,)) for n in range(clients)]
            cpu_before = server_cpu_seconds({"web": web, "worker": worker})
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            cpu_after = server_cpu_seconds({"web": web, "worker": worker})
            per_request = {name: (cpu_after[name] - cpu_before[name]) * 1000 / max(1, len(results) + len(errors))
                           for name in cpu_after}
            cpu_ms = sum(per_request.values())
            cpu_parts.append((clients, per_request))
            backend_ms = dict(
                Generation.objects.filter(request_id__in=[r for r, _ in results]).values_list("request_id", "generate_ms")
            )
            latencies = [ms for _, ms in results]
            overheads = [ms - (backend_ms.get(r) or 0) for r, ms in results]
            print(f"{clients:>7} {len(results) + len(errors):>8} {len(results) / wall:>7.0f} "
                  f"{statistics.median(latencies):>7.1f} {percentile(latencies, 99):>7.1f} "
                  f"{statistics.median(overheads):>12.1f} {percentile(overheads, 99):>12.1f} {cpu_ms:>17.1f} "
                  f"{len(errors):>6}")
        print("server CPU ms per request by process: " + "; ".join(
            f"{clients} clients: " + ", ".join(f"{name} {ms:.1f}" for name, ms in parts.items())
            for clients, parts in cpu_parts))
    finally:
        web.terminate()
        worker.terminate()
        web.wait(timeout=30)
        worker.wait(timeout=30)
        shutil.rmtree(media, ignore_errors=True)


if __name__ == "__main__":
    main()
