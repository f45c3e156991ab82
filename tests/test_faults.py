"""Nothing lost, under faults (issue #9).

Each test really kills or stops a process (a Celery worker, Redis, PostgreSQL) or wedges a
backend, then checks what a user would: the answer's status and code, the balance (the wallet
equals the ledger's sum, and is the credit less the price of each image delivered), the
Generation row, and that nothing was charged twice.
"""

import functools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from accounts.apikeys import create_api_key
from billing import ledger
from billing.models import LedgerEntry
from config.celery import app as celery_app
from generation import dispatch, limits, rendering
from generation.models import Generation
from generation.tasks import expire_stale_generations, run_generation_task
from tests.conftest import generate, make_user

PRICE = Decimal("0.009")
CI = os.environ.get("CI") == "true"
REPO = Path(__file__).resolve().parent.parent
SLOW_BACKEND = "tests.fault_backends.SlowBackend"
HANGING_BACKEND = "tests.fault_backends.HangingBackend"
Status = Generation.Status


# --- processes ---------------------------------------------------------------------------------

def require_binary(name: str, *, search_path: str | None = None) -> str:
    """The binary's path. A missing one fails the test under CI (nothing is skipped there)."""
    found = shutil.which(name, path=search_path)
    if found is None:
        if CI:
            pytest.fail(f"{name} is required under CI")
        pytest.skip(f"{name} is not installed")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args, **kwargs) -> subprocess.Popen:
    """A process in a group of its own, so that it and everything it forks can be signalled."""
    return subprocess.Popen(args, start_new_session=True, **kwargs)


def signal_group(process: subprocess.Popen, sig: int, *, timeout: float = 15) -> None:
    # The group outlives its leader when children remain, so signal it even after an exit.
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def wait_until(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return result


class Call(threading.Thread):
    """func() on a thread of its own, started at once; outcome() waits for what it returned
    (or raises what it raised)."""

    def __init__(self, func):
        super().__init__(daemon=True)
        self.func = func
        self.result = self.error = None
        self.start()

    def run(self):
        try:
            self.result = self.func()
        except Exception as exc:  # noqa: BLE001 (handed to the test's thread by outcome())
            self.error = exc
        finally:
            connection.close()  # this thread's own connection, before the test's flush

    def outcome(self, *, timeout: float):
        self.join(timeout=timeout)
        if self.is_alive():
            pytest.fail(f"no answer within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


def assert_books_balance(user, expected):
    assert ledger.balance(user=user) == ledger.ledger_sum(user=user) == Decimal(expected)


def reference_error(body: dict) -> dict:
    """The reference's part of an error body (other fields may be added beside it)."""
    return {"error": body.get("error"), "code": body.get("code")}


def ledger_entries(user) -> list[tuple[str, Decimal]]:
    return list(LedgerEntry.objects.filter(user=user).order_by("id").values_list("kind", "amount"))


def stored_images(media_root) -> set:
    return {path for path in Path(media_root).rglob("*") if path.is_file()}


# --- a dedicated Celery worker -----------------------------------------------------------------

@pytest.fixture
def fault_worker(django_db_setup, media_root, monkeypatch):
    """Start a Celery worker of this test's own, on a private queue, against the test database.

    The private queue keeps the session `celery_worker` (when another test started it) from
    taking these tasks: the process this test kills must be the one holding the generation.
    """
    assert django_settings.REDIS_URL, "worker tests need REDIS_URL"
    queue = f"faults-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setattr(run_generation_task, "apply_async",
                        functools.partial(run_generation_task.apply_async, queue=queue))
    db = connection.settings_dict
    started = []

    def start(*, pool: str, concurrency: int, env: dict) -> subprocess.Popen:
        name = f"{queue}-{len(started)}@faults"
        worker = spawn(
            [sys.executable, "-m", "celery", "-A", "config", "--quiet", "worker", "-Q", queue, "-P", pool,
             "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-l", "error", "-n", name],
            cwd=REPO,
            env={
                **os.environ,
                "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
                "REDIS_URL": django_settings.REDIS_URL,
                "MEDIA_ROOT": media_root,
                **env,
            },
        )
        started.append(worker)
        wait_until(lambda: worker.poll() is not None or celery_app.control.ping(destination=[name], timeout=0.3),
                   timeout=60, what="the worker to answer a ping")
        assert worker.poll() is None, "the worker exited at start"
        return worker

    yield start
    for worker in started:
        signal_group(worker, signal.SIGKILL)


# --- 1. a worker killed mid-generation ---------------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_generation_refunds_each_charge_once(fault_worker, settings, media_root):
    settings.GENERATION_TIMEOUT_S = 3
    settings.GENERATION_LEASE_S = 1
    # Long enough that only the kill can end these generations (and no time limit interferes).
    settings.GENERATION_SOFT_LIMIT_MARGIN_S = settings.GENERATION_HARD_LIMIT_MARGIN_S = 600
    worker = fault_worker(pool="prefork", concurrency=2,
                          env={"GENERATION_BACKEND": SLOW_BACKEND, "FAULT_BACKEND_SLEEP_S": "120"})
    user = make_user("killed@example.com", balance="1")
    charlie = make_user("charlie@example.com", balance="1")
    _, key = create_api_key(user=user)

    sent_at = time.monotonic()
    sync_call = Call(lambda: generate(Client(), key, {"prompt": "a fox, waiting"}))
    accepted = generate(Client(), key, {"prompt": "a fox, async", "async": True})
    assert accepted.status_code == HTTPStatus.ACCEPTED, accepted.content
    wait_until(lambda: Generation.objects.filter(user=user, status=Status.RUNNING).count() == 2,
               timeout=20, what="both generations to be running on the worker")
    assert ledger.balance(user=user) == Decimal(1) - 2 * PRICE

    signal_group(worker, signal.SIGKILL)

    # The waiting request answers once its deadline (plus the grace for the worker) has passed.
    response = sync_call.outcome(timeout=settings.GENERATION_TIMEOUT_S + dispatch.WAIT_GRACE_S + 10)
    answered_after = time.monotonic() - sent_at
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR, response.content
    assert reference_error(response.json()) == {"error": "Generation failed", "code": "GENERATION_FAILED"}
    assert settings.GENERATION_TIMEOUT_S <= answered_after < settings.GENERATION_TIMEOUT_S + dispatch.WAIT_GRACE_S + 5
    waited = Generation.objects.get(user=user, is_async=False)
    assert (waited.status, waited.error_code) == (Status.FAILED, "GENERATION_FAILED")

    # Nobody waits for the async one: it stays running until the beat task's lease runs out.
    queued = Generation.objects.get(pk=accepted.json()["id"])
    assert queued.status == Status.RUNNING
    assert_books_balance(user, Decimal(1) - PRICE)
    assert expire_stale_generations() == 1
    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == (Status.FAILED, "GENERATION_FAILED")
    status = Client().get(accepted.json()["status_url"], HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert status["status"] == "failed"
    assert reference_error(status["error"]) == {"error": "Generation failed", "code": "GENERATION_FAILED"}
    assert_books_balance(user, "1")

    # The broker redelivers a dead worker's unacknowledged task; the second run must do nothing.
    books, images = ledger_entries(user), stored_images(media_root)
    for generation in (waited, queued):
        assert rendering.run_generation(generation_id=generation.pk, deadline_at=time.time() + 10) == {}
        generation.refresh_from_db()
        assert (generation.status, generation.image) == (Status.FAILED, "")
    assert ledger_entries(user) == books == [
        ("adjustment", Decimal(1)), ("charge", -PRICE), ("charge", -PRICE), ("refund", PRICE), ("refund", PRICE),
    ]
    assert stored_images(media_root) == images
    assert_books_balance(user, "1")
    assert_books_balance(charlie, "1")


# --- 2. Redis down -----------------------------------------------------------------------------

class RedisServer:
    """A private redis-server on a port of its own, killed and started again by the test."""

    def __init__(self, binary: str):
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers():
            assert self.process.poll() is None, "redis-server exited at start"
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=10, what="redis-server to answer")

    def kill(self):
        signal_group(self.process, signal.SIGKILL)


@pytest.fixture
def private_redis(settings):
    """The app's Redis (limits, cache) is a private server this test may kill."""
    server = RedisServer(require_binary("redis-server"))
    server.start()
    settings.REDIS_URL = server.url
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url,
                                   "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"}}}
    # The limit store is built once per process from REDIS_URL: rebuild it now and after.
    limits._storage.cache_clear()
    limits._moving_window.cache_clear()
    yield server
    limits._storage.cache_clear()
    limits._moving_window.cache_clear()
    server.kill()


@pytest.mark.django_db
def test_redis_down_refuses_with_503_charges_nothing_and_recovers_by_itself(client, alice, alice_key, private_redis):
    assert generate(client, alice_key, {"prompt": "before the outage"}).status_code == HTTPStatus.OK

    private_redis.kill()
    started = time.monotonic()
    response = generate(client, alice_key, {"prompt": "during the outage"})

    # Rate limits fail closed: no limit store, no generation.
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, response.content
    assert reference_error(response.json()) == {"error": "Service temporarily unavailable, retry shortly",
                                               "code": "SERVICE_UNAVAILABLE"}
    assert int(response["Retry-After"]) > 0
    assert time.monotonic() - started < 5
    assert list(Generation.objects.filter(user=alice).values_list("prompt", flat=True)) == ["before the outage"]
    assert_books_balance(alice, Decimal(1) - PRICE)
    # The site itself does not need Redis.
    assert client.get("/").status_code == HTTPStatus.OK
    assert client.get("/accounts/login/").status_code == HTTPStatus.OK
    client.force_login(alice)
    assert client.get("/dashboard/").status_code == HTTPStatus.OK
    client.logout()

    private_redis.start()
    response = generate(client, alice_key, {"prompt": "after the outage"})
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["balance_usd"] == pytest.approx(float(Decimal(1) - 2 * PRICE))
    assert_books_balance(alice, Decimal(1) - 2 * PRICE)
    assert Generation.objects.filter(user=alice, status=Status.SUCCEEDED).count() == 2


# --- 3. PostgreSQL restarted -------------------------------------------------------------------

def _postgres_bindir() -> str:
    """Debian keeps initdb and pg_ctl off PATH, under /usr/lib/postgresql/<version>/bin."""
    candidates = sorted((path for path in Path("/usr/lib/postgresql").glob("*/bin") if path.parent.name.isdigit()),
                        key=lambda path: int(path.parent.name), reverse=True)
    search = os.pathsep.join([*map(str, candidates), os.environ.get("PATH", "")])
    return str(Path(require_binary("pg_ctl", search_path=search)).parent)


class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory, restarted by the tests."""

    def __init__(self):
        self.bindir = _postgres_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="animeapi-faults-pg-"))
        # initdb refuses to run as root: the cluster belongs to the postgres user then.
        self.as_owner = []
        if os.geteuid() == 0:
            self.as_owner = [require_binary("runuser"), "-u", "postgres", "--"]
            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/animeapi"

    def _run(self, *args):
        subprocess.run([*self.as_owner, *args], check=True, capture_output=True, timeout=60)

    def _pg_ctl(self, *args):
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", *args)

    def create(self):
        self._run(f"{self.bindir}/initdb", "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust", "--no-sync")
        # Durability is not under test here and fsync would only slow the restarts.
        self._pg_ctl("-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        self._run(f"{self.bindir}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "animeapi")

    def restart(self):
        self._pg_ctl("-m", "fast", "restart")

    def destroy(self):
        try:
            self._pg_ctl("-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, sql, params=()):
        # A fresh connection each time: the test's own must not be the one a restart breaks.
        with psycopg.connect(self.url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def books(self, email) -> tuple[Decimal, Decimal]:
        """(wallet balance, sum of the ledger) for the user."""
        (row,) = self.query(
            "SELECT w.balance, (SELECT SUM(e.amount) FROM billing_ledgerentry e WHERE e.user_id = u.id) "
            "FROM accounts_user u JOIN billing_wallet w ON w.user_id = u.id WHERE u.email = %s", [email])
        return row

    def generations(self, email) -> list[tuple[str, str]]:
        return self.query(
            "SELECT g.status, g.error_code FROM generation_generation g JOIN accounts_user u ON u.id = g.user_id "
            "WHERE u.email = %s ORDER BY g.created_at", [email])


class AppServer:
    """The app (manage.py runserver) in a subprocess against the private cluster. REDIS_URL is
    unset, so generation runs eagerly in the request's thread: the embedded-defaults setup."""

    def __init__(self, cluster: PostgresCluster, workdir: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.env = {**os.environ, "DATABASE_URL": cluster.url, "DEBUG": "0", "SECRET_KEY": "faults-test-only",
                    "GENERATION_BACKEND": SLOW_BACKEND, "FAULT_BACKEND_SLEEP_S": "3",
                    "MEDIA_ROOT": str(workdir / "media")}
        self.env.pop("REDIS_URL", None)
        self.process = None

    def manage(self, *args) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    @staticmethod
    def output(command: subprocess.Popen) -> str:
        stdout, stderr = command.communicate(timeout=120)
        if command.returncode != 0:
            pytest.fail(f"{command.args} failed:\n{stderr}")
        return stdout

    def start(self):
        with open(self.log, "ab") as log:
            self.process = spawn([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
                                 cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def up():
            assert self.process.poll() is None, f"the server exited at start:\n{self.log.read_text()[-3000:]}"
            try:
                return self.request("GET", "/healthz")[0] == HTTPStatus.OK
            except OSError:
                return False

        wait_until(up, timeout=30, what="the server to answer /healthz")

    def stop(self):
        signal_group(self.process, signal.SIGKILL)

    def request(self, method, path, *, key=None, body=None, timeout=30) -> tuple[int, str, str]:
        """(status, Content-Type, body text), whatever the status."""
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as answer:
                return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read().decode()

    def generate(self, key, prompt):
        return self.request("POST", "/api/generate", key=key, body={"prompt": prompt})


POSTGRES_USER = "restart@example.com"


@pytest.fixture
def postgres_app():
    """A private cluster, migrated, a funded key, and the app serving from it."""
    cluster = PostgresCluster()
    workdir = Path(tempfile.mkdtemp(prefix="animeapi-faults-app-"))
    server = AppServer(cluster, workdir)
    try:
        cluster.create()
        server.output(server.manage("migrate", "--no-input"))
        # Each manage.py costs seconds of start-up: create the key while the server starts.
        creating = server.manage("createapikey", POSTGRES_USER, "--credit", "1")
        server.start()
        server.key = server.output(creating).strip().splitlines()[-1]
        yield cluster, server
    finally:
        if server.process is not None:
            server.stop()
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def assert_postgres_books(cluster, *, images_delivered):
    wallet, ledger_total = cluster.books(POSTGRES_USER)
    assert wallet == ledger_total == Decimal(1) - PRICE * images_delivered


def test_a_postgres_restart_during_requests_loses_nothing(postgres_app):
    cluster, server = postgres_app
    # Concurrent requests first, so that several connections sit idle in the app's pool when the
    # restart kills them: a request that gets one must still succeed.
    warm = [Call(functools.partial(server.generate, server.key, f"warm-up {n}")) for n in range(3)]
    answers = [call.outcome(timeout=30) for call in warm]
    assert [status for status, _, _ in answers] == [HTTPStatus.OK] * 3, answers

    in_flight = Call(lambda: server.generate(server.key, "in flight during the restart"))
    wait_until(lambda: ("running", "") in cluster.generations(POSTGRES_USER), timeout=10,
               what="the in-flight generation to be running")
    cluster.restart()

    # Its connection died under it. Whether it still delivers depends on the database being back
    # before the image is; either way the answer is JSON and the money follows the image.
    status, content_type, body = in_flight.outcome(timeout=60)
    assert content_type == "application/json", body
    if status == HTTPStatus.OK:
        delivered = 4
    else:
        assert status in (HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.SERVICE_UNAVAILABLE), body
        assert {"error", "code"} <= set(json.loads(body)), body
        delivered = 3
    assert_postgres_books(cluster, images_delivered=delivered)

    listed = [server.request("GET", "/api/generations", key=server.key) for _ in range(3)]
    assert [answer[:2] for answer in listed] == [(HTTPStatus.OK, "application/json")] * 3, listed
    assert server.generate(server.key, "after the restart")[0] == HTTPStatus.OK
    assert_postgres_books(cluster, images_delivered=delivered + 1)
    statuses = [status for status, _ in cluster.generations(POSTGRES_USER)]
    assert statuses.count("succeeded") == delivered + 1
    assert set(statuses) <= {"succeeded", "failed"}, "no generation may be left unfinished"


# --- 4. a backend that hangs -------------------------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_hanging_backend_is_refunded_at_the_deadline_and_the_time_limit_frees_the_worker(
        fault_worker, settings):
    # Each message carries the sender's limits: timeout 2 s, interrupted at 2 + 3 s, killed at 2 + 20 s.
    settings.GENERATION_TIMEOUT_S = 2
    settings.GENERATION_SOFT_LIMIT_MARGIN_S = soft_margin = 3
    settings.GENERATION_HARD_LIMIT_MARGIN_S = hard_margin = 20
    worker = fault_worker(pool="prefork", concurrency=1, env={"GENERATION_BACKEND": HANGING_BACKEND})
    user = make_user("hang@example.com", balance="1")
    _, key = create_api_key(user=user)

    started = time.monotonic()
    response = generate(Client(), key, {"prompt": "hang", "enhance": False})
    answered_after = time.monotonic() - started

    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR, response.content
    assert reference_error(response.json()) == {"error": "Generation failed", "code": "GENERATION_FAILED"}
    assert settings.GENERATION_TIMEOUT_S <= answered_after < settings.GENERATION_TIMEOUT_S + dispatch.WAIT_GRACE_S + 3
    hung = Generation.objects.get(user=user)
    assert (hung.status, hung.error_code) == (Status.FAILED, "GENERATION_FAILED")
    assert_books_balance(user, "1")

    # The only worker process is still stuck in the backend; this one waits in the queue until
    # the soft time limit interrupts it.
    settings.GENERATION_TIMEOUT_S = 20
    settings.GENERATION_SOFT_LIMIT_MARGIN_S = settings.GENERATION_HARD_LIMIT_MARGIN_S = 5
    response = generate(Client(), key, {"prompt": "a quiet lake", "enhance": False})

    assert response.status_code == HTTPStatus.OK, response.content
    after = Generation.objects.get(user=user, prompt="a quiet lake")
    assert after.status == Status.SUCCEEDED
    # It started when the soft limit freed the worker, not before and not at the hard limit.
    waited_s = (after.started_at - hung.started_at).total_seconds()
    assert 2 + soft_margin - 0.5 <= waited_s < 2 + hard_margin, waited_s
    assert worker.poll() is None
    hung.refresh_from_db()
    assert (hung.status, hung.image) == (Status.FAILED, "")
    assert_books_balance(user, Decimal(1) - PRICE)
    assert [kind for kind, _ in ledger_entries(user)] == ["adjustment", "charge", "refund", "charge"]
