"""The Celery app: broker and results on REDIS_URL; eager (in-process) when it is unset."""

import os
import threading
import time

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("animeapi")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Worker start-up: load and warm the GPU model once per process (imports only celery.signals;
# web nodes never import torch).
import generation.worker  # noqa: E402,F401


@signals.worker_ready.connect
def _start_heartbeat(**kwargs):
    """Tell /readyz this worker is alive: a cache key refreshed from a daemon thread."""
    from config.health import HEARTBEAT_INTERVAL_S, record_worker_heartbeat

    def beat():
        while True:
            try:
                record_worker_heartbeat()
            except Exception:  # Redis briefly down: try again next interval
                pass
            time.sleep(HEARTBEAT_INTERVAL_S)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
