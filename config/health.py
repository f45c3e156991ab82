"""Liveness and readiness, for load balancers and orchestrators. JSON, no auth, no secrets."""

import logging
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app as celery_app

log = logging.getLogger(__name__)

# A worker writes this key every HEARTBEAT_INTERVAL_S; readiness wants one seen within a minute.
HEARTBEAT_KEY = "worker-heartbeat"
HEARTBEAT_INTERVAL_S = 15
HEARTBEAT_MAX_AGE_S = 60


def record_worker_heartbeat() -> None:
    cache.set(HEARTBEAT_KEY, time.time(), timeout=HEARTBEAT_MAX_AGE_S * 5)


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis():
    if not settings.REDIS_URL:
        return "not configured"
    from django_redis import get_redis_connection

    get_redis_connection("default").ping()


def _check_broker():
    if celery_app.conf.task_always_eager:
        return "eager"
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check_storage():
    name = default_storage.save(f"health/{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    default_storage.delete(name)


def _check_worker():
    if celery_app.conf.task_always_eager:
        return "eager"
    seen = cache.get(HEARTBEAT_KEY)
    if seen is None or time.time() - seen > HEARTBEAT_MAX_AGE_S:
        raise RuntimeError("no worker heartbeat in the last minute")
    return f"seen {int(time.time() - seen)}s ago"


CHECKS = {
    "database": _check_database,
    "redis": _check_redis,
    "broker": _check_broker,
    "storage": _check_storage,
    "worker": _check_worker,
}


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    results, ready = {}, True
    for name, check in CHECKS.items():
        try:
            results[name] = check() or "ok"
        except Exception as exc:
            # The reason goes to the log; the answer names the failing part only.
            log.warning("readiness check %s failed: %s", name, exc)
            results[name] = "failing"
            ready = False
    response = JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)
    # Not ready is a state (a node starting, a worker restarting), already logged above with its
    # reason at WARNING: keep Django from logging every probe's 503 as an ERROR.
    response._has_been_logged = True
    return response
