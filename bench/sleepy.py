"""A backend that holds a worker thread as long as a GPU would, then answers with a ready-made WEBP.

BENCH_SLEEP_S (default 5) is the stand-in GPU time. Sleeping, unlike computing, leaves the CPU to
the web tier, so what a benchmark measures is how many requests we keep waiting and what that
costs, not how fast an image is made.
"""

import dataclasses
import os
import time

from django.db import connection

from generation.backends.base import BackendError, GenerationBackend

from .instant import InstantBackend


class SleepyBackend(GenerationBackend):
    name = "sleepy"

    def __init__(self):
        self.sleep_s = float(os.environ.get("BENCH_SLEEP_S", "5"))
        self.instant = InstantBackend()

    def generate(self, request, *, deadline):
        # One worker process stands in for hundreds of GPUs here. The pipeline keeps its
        # database connection while a backend runs, which real GPUs (a few per machine) can
        # afford and hundreds of stand-ins cannot: without this, the benchmark would measure the
        # worker's pool, not the web node.
        if not connection.in_atomic_block:
            connection.close()
        # Like a real backend: one that cannot finish before the deadline gives up at it.
        remaining = deadline - time.monotonic()
        if remaining < self.sleep_s:
            time.sleep(max(0.0, remaining))
            raise BackendError(f"would finish {self.sleep_s - remaining:.1f}s after the deadline")
        time.sleep(self.sleep_s)
        return dataclasses.replace(self.instant.generate(request, deadline=deadline), model="sleepy")
