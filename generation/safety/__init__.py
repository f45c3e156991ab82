"""The image safety check that applies to every backend when allowNSFW is false.

An image is flagged when the backend's own checker says so (Runware's NSFWContent) or, when the
optional `[safety]` extra is installed, when NudeNet's detector finds exposed genitalia, breasts,
anus or buttocks with at least SAFETY_THRESHOLD confidence. Without the extra the check relies on
the prompt policy and the backend's checker alone. Web nodes never run it, so the classifier's
packages are imported on first use, in the worker.
"""

import functools
import importlib.util
import logging
import time

from django.conf import settings

from ..backends.base import BackendImage
from . import nudenet

log = logging.getLogger(__name__)


@functools.cache
def classifier_installed() -> bool:
    # Once per process: dispatch asks on every sync request, and installing it needs a restart.
    return importlib.util.find_spec("nudenet") is not None and importlib.util.find_spec("onnxruntime") is not None


def warm_up() -> bool:
    """Load the classifier now (worker start) rather than in the first request; False without it."""
    if not classifier_installed():
        return False
    nudenet.detector()
    return True


def is_flagged(image: BackendImage) -> bool:
    """True when the image must not be returned to a caller who asked for allowNSFW=false.

    The classifier's time and any labels it found are kept in image.details (safety_ms,
    safety_labels), which the generation row stores for the image that is returned.
    """
    if image.nsfw:
        return True
    if not classifier_installed():
        return False
    started = time.perf_counter()
    labels = nudenet.nsfw_labels(nudenet.detect(image.data), threshold=getattr(settings, "SAFETY_THRESHOLD", 0.5))
    image.details["safety_ms"] = round((time.perf_counter() - started) * 1000, 1)
    image.details["safety_model"] = nudenet.MODEL
    if labels:
        image.details["safety_labels"] = labels
        log.info("image classifier flagged %s", ", ".join(labels))
    return bool(labels)
