"""Test-only backends for the fault tests, chosen by dotted path (GENERATION_BACKEND), so a worker
or server subprocess can load them without any test code being patched into it.

The backend a generation runs on is the one its row names (the web side's GENERATION_BACKEND),
so the web side of a test selects these, not only the worker's environment.
"""

import os
import time

from generation.backends.base import BackendError
from generation.backends.preview import PreviewBackend


class SlowBackend(PreviewBackend):
    """A preview image after FAULT_BACKEND_SLEEP_S seconds (read per call, default 5): long
    enough to kill a process, or restart a database, while a generation is in flight."""

    name = "slow"
    waits_seconds = True

    def generate(self, request, *, deadline):
        time.sleep(float(os.environ.get("FAULT_BACKEND_SLEEP_S", "5")))
        return super().generate(request, deadline=deadline)


class HangingBackend(PreviewBackend):
    """Never returns for a prompt containing "hang" (ignoring the deadline, as a wedged GPU
    would); a preview image otherwise. Only the task's time limit can free the worker."""

    name = "hanging"
    waits_seconds = True

    def generate(self, request, *, deadline):
        if "hang" in request.prompt:
            while True:
                time.sleep(3600)
        return super().generate(request, deadline=deadline)


class OddSeedFailsBackend(PreviewBackend):
    """Fails every image whose seed is odd (a preview image otherwise): with "seed": 100 and
    "n": 3, the second image of three fails, the partial failure of a batch."""

    name = "odd-seed-fails"

    def generate(self, request, *, deadline):
        if request.seed % 2:
            raise BackendError(f"odd seed {request.seed}", provider_code="test")
        return super().generate(request, deadline=deadline)
