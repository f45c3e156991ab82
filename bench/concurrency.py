"""How many synchronous requests one web node keeps waiting on the GPUs, and what it costs.

Starts gunicorn with config/gunicorn.py and a Celery worker (threads pool) on this machine,
against PostgreSQL and Redis, and for each gunicorn worker class (gthread, gevent):

- 200 clients each send POST /api/generate at the same moment to a backend that sleeps 5 s in
  place of a GPU (bench.sleepy.SleepyBackend), for a few rounds: errors, the latency beyond the
  5 s, the web node's CPU time per request and memory (RSS of the gunicorn master and its
  workers, from /proc, shared pages counted in each), PostgreSQL connections open at the peak;
- 32 keep-alive clients against a backend that answers at once (bench.instant.InstantBackend)
  for a fixed time: requests per second, the API's own throughput on this machine (where the
  clients, the worker, PostgreSQL and Redis share its cores with the web node).

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/concurrency.py \
        [--worker-classes gthread,gevent] [--clients 200] [--rounds 2] [--rps-clients 32] [--rps-seconds 15]
"""

import argparse
import collections
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import ensure_database, free_port, percentile

SLEEPY = "bench.sleepy.SleepyBackend"
INSTANT = "bench.instant.InstantBackend"
BODY = {"prompt": "anime girl with blue hair, magical forest"}


def process_tree(pid):
    """`pid` and its children (gunicorn's workers are direct children of the master)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the parent pid follows it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry))
    return [pid, *children]


def cpu_seconds(pids):
    """User + system CPU time the processes have used so far."""
    total_ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total_ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(pids):
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


class Sampler(threading.Thread):
    """Peak web-node RSS and PostgreSQL connections to the benchmark's database, every 200 ms."""

    def __init__(self, web_pid, database_url):
        super().__init__(daemon=True)
        self.web_pid, self.database_url = web_pid, database_url
        self.peak_rss_mib = 0.0
        self.peak_connections = 0
        self.stopped = threading.Event()

    def run(self):
        import dj_database_url
        import psycopg

        db = dj_database_url.parse(self.database_url)
        with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                             password=db["PASSWORD"] or None, dbname="postgres", autocommit=True) as conn:
            while not self.stopped.wait(0.2):
                self.peak_rss_mib = max(self.peak_rss_mib, rss_mib(process_tree(self.web_pid)))
                (count,) = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                        [db["NAME"]]).fetchone()
                self.peak_connections = max(self.peak_connections, count)

    def stop(self):
        self.stopped.set()
        self.join(timeout=5)


class Measured:
    """Wall time, the web node's CPU time and the Sampler's peaks over a `with` block."""

    def __init__(self, stack, database_url):
        self.stack, self.database_url = stack, database_url

    def __enter__(self):
        self.sampler = Sampler(self.stack.process.pid, self.database_url)
        self.sampler.start()
        self.cpu_start = cpu_seconds(process_tree(self.stack.process.pid))
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.wall_s = time.perf_counter() - self.started
        self.web_cpu_s = cpu_seconds(process_tree(self.stack.process.pid)) - self.cpu_start
        self.sampler.stop()


def row(worker_class, backend, clients, rate, latencies, errors, measured, *, idle_rss=None):
    answered = len(latencies) + sum(errors.values())
    latencies = latencies or [float("nan")]
    return (worker_class, backend, clients, answered, f"{rate:.0f}", f"{statistics.median(latencies):.0f}",
            f"{percentile(latencies, 99):.0f}", f"{measured.web_cpu_s * 1000 / max(answered, 1):.0f}",
            "" if idle_rss is None else f"{idle_rss:.0f}", f"{measured.sampler.peak_rss_mib:.0f}",
            measured.sampler.peak_connections, describe(errors))


class Stack:
    """gunicorn (config/gunicorn.py) for one worker class and backend, on a fresh port."""

    def __init__(self, env, *, worker_class, backend):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        venv_bin = Path(sys.executable).parent
        self.process = subprocess.Popen(
            [str(venv_bin / "gunicorn"), "-c", "config/gunicorn.py", "config.wsgi"],
            cwd=ROOT,
            env={**env, "BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKER_CLASS": worker_class,
                 "GENERATION_BACKEND": backend, "GUNICORN_ACCESS_LOG": "", "GUNICORN_LOG_LEVEL": "warning"},
        )

    def wait_ready(self, headers, timeout_s=90):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit("gunicorn exited at start")
            try:
                if httpx.post(f"{self.base}/api/generate", headers=headers, json=BODY, timeout=60).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        sys.exit("the web node or the worker did not come up")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        self.process.wait(timeout=120)


class Worker:
    """A Celery worker on the generate queue, running `backend`, for the duration of a `with` block."""

    def __init__(self, env, *, backend, concurrency):
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "config", "worker", "-Q", "generate",
             "-P", "threads", "-c", str(concurrency), "--without-gossip", "--without-mingle", "-l", "warning",
             "-n", f"bench-concurrency-{os.getpid()}@%h"],
            cwd=ROOT, env={**env, "GENERATION_BACKEND": backend},
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        self.process.wait(timeout=120)


def classify(response_or_error):
    if isinstance(response_or_error, Exception):
        return type(response_or_error).__name__
    try:
        return f"{response_or_error.status_code} {response_or_error.json().get('code', '')}".strip()
    except ValueError:
        return str(response_or_error.status_code)


def burst(base, headers, *, clients, rounds, timeout_s):
    """`clients` requests released together, `rounds` times; (latencies ms of 200s, error counts)."""
    latencies, errors = [], collections.Counter()
    lock = threading.Lock()
    gate = threading.Barrier(clients)

    def client(index):
        for _ in range(rounds):
            # A new connection per request: a round outlasts gunicorn's keep-alive, and a request
            # sent on a connection the server is closing fails on the client's side of the race.
            with httpx.Client(base_url=base, headers=headers, timeout=timeout_s) as http:
                gate.wait()
                started = time.perf_counter()
                try:
                    outcome = http.post("/api/generate", json=BODY)
                except httpx.HTTPError as exc:
                    outcome = exc
                elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors[classify(outcome)] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def throughput(base, headers, *, clients, seconds, timeout_s):
    """Keep-alive clients in a loop for `seconds`; (latencies ms, error counts)."""
    latencies, errors = [], collections.Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client():
        with httpx.Client(base_url=base, headers=headers, timeout=timeout_s) as http:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    outcome = http.post("/api/generate", json=BODY)
                except httpx.HTTPError as exc:
                    outcome = exc
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors[classify(outcome)] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def describe(errors):
    return ", ".join(f"{count}x {kind}" for kind, count in errors.most_common()) or "-"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker-classes", default="",
                        help="comma-separated gunicorn worker classes (default: gthread, and gevent when installed)")
    parser.add_argument("--clients", type=int, default=200, help="simultaneous requests to the sleepy backend")
    parser.add_argument("--rounds", type=int, default=2, help="bursts of --clients requests")
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds the stand-in GPU takes")
    parser.add_argument("--worker-concurrency", type=int, default=0,
                        help="Celery worker threads (default: --clients, so no request queues for a GPU)")
    parser.add_argument("--rps-clients", type=int, default=32)
    parser.add_argument("--rps-seconds", type=float, default=15.0)
    args = parser.parse_args()
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} must point at PostgreSQL / Redis")
    worker_classes = [name.strip() for name in args.worker_classes.split(",") if name.strip()]
    gevent_installed = importlib.util.find_spec("gevent") is not None
    if not worker_classes:
        worker_classes = ["gthread", "gevent"] if gevent_installed else ["gthread"]
    elif "gevent" in worker_classes and not gevent_installed:
        sys.exit("gevent is not installed: pip install gevent, or --worker-classes gthread")

    ensure_database(os.environ["DATABASE_URL"])
    media = tempfile.mkdtemp(prefix="bench-media-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "MEDIA_ROOT": media,
        "BENCH_SLEEP_S": str(args.sleep),
        "ANIMEAPI_RATE_LIMIT_PER_MINUTE": "100000000",
        "ANIMEAPI_DAILY_LIMIT": "100000000",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    from accounts.apikeys import create_api_key
    from accounts.models import User
    from billing import ledger

    user, _ = User.objects.get_or_create(email="bench-concurrency@example.com")
    ledger.credit(user=user, amount="100000", kind=ledger.Kind.ADJUSTMENT, reference=f"bench:{time.time_ns()}")
    _, key = create_api_key(user=user, name=f"bench {time.time_ns()}")
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        (max_connections,) = cursor.fetchone()
    connection.close()
    headers = {"Authorization": f"Bearer {key}"}
    request_timeout_s = float(env.get("GENERATION_TIMEOUT_S") or 60) + 30

    # The worker runs its own GENERATION_BACKEND, so each backend gets its own worker. Sleepy: a
    # thread per client, so no request waits for a stand-in GPU.
    sleepy_concurrency = args.worker_concurrency or args.clients
    load_before = os.getloadavg()[0]
    rows = []
    try:
        with Worker(env, backend=SLEEPY, concurrency=sleepy_concurrency):
            for worker_class in worker_classes:
                with Stack(env, worker_class=worker_class, backend=SLEEPY) as stack:
                    stack.wait_ready(headers)
                    idle_rss = rss_mib(process_tree(stack.process.pid))
                    with Measured(stack, env["DATABASE_URL"]) as measured:
                        latencies, errors = burst(stack.base, headers, clients=args.clients, rounds=args.rounds,
                                                  timeout_s=request_timeout_s)
                    overheads = [ms - args.sleep * 1000 for ms in latencies]
                    rows.append(row(worker_class, "sleepy", args.clients, len(latencies) / measured.wall_s,
                                    overheads, errors, measured, idle_rss=idle_rss))
        with Worker(env, backend=INSTANT, concurrency=args.rps_clients):
            for worker_class in worker_classes:
                with Stack(env, worker_class=worker_class, backend=INSTANT) as stack:
                    stack.wait_ready(headers)
                    with Measured(stack, env["DATABASE_URL"]) as measured:
                        latencies, errors = throughput(stack.base, headers, clients=args.rps_clients,
                                                       seconds=args.rps_seconds, timeout_s=request_timeout_s)
                    rows.append(row(worker_class, "instant", args.rps_clients, len(latencies) / measured.wall_s,
                                    latencies, errors, measured))
    finally:
        shutil.rmtree(media, ignore_errors=True)

    workers = os.environ.get("WEB_CONCURRENCY") or os.cpu_count()
    threads = os.environ.get("GUNICORN_THREADS") or 128
    print(f"POST /api/generate on one web node: gunicorn -c config/gunicorn.py ({workers} workers; gthread: "
          f"{threads} threads each), one Celery worker (threads pool: x{sleepy_concurrency} sleepy, "
          f"x{args.rps_clients} instant), {os.cpu_count()} cores, "
          f"PostgreSQL max_connections={max_connections}; load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"sleepy: {args.clients} requests released together, {args.rounds} rounds, a {args.sleep:g} s stand-in "
          f"GPU; ms columns are latency beyond {args.sleep:g} s. instant: {args.rps_clients} keep-alive clients "
          f"for {args.rps_seconds:g} s; ms columns are the whole latency.")
    header = ("worker", "backend", "clients", "requests", "req/s", "p50 ms", "p99 ms", "web CPU ms/req",
              "idle MiB", "peak MiB", "pg conns", "errors")
    widths = [max(len(str(line[i])) for line in [header, *rows]) for i in range(len(header))]
    for line in [header, *rows]:
        print("  ".join(str(cell).rjust(width) if i not in (0, 1, len(header) - 1) else str(cell).ljust(width)
                        for i, (cell, width) in enumerate(zip(line, widths, strict=True))).rstrip())


if __name__ == "__main__":
    main()
