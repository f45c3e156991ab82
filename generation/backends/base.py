"""What every image backend takes and gives back. Only generation/backends/ talk to backends."""

import abc
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class ImageRequest:
    prompt: str  # exactly the enhanced_prompt the API answers with
    negative_prompt: str
    width: int
    height: int
    allow_nsfw: bool
    seed: int  # 0 .. 2**32-1, chosen by the pipeline so it can be stored and reproduced
    request_id: str = ""
    model_id: str = ""  # a GENERATION_MODELS id; "" is the default model


@dataclass
class BackendImage:
    """One finished image. `data` is encoded image bytes in any format Pillow reads."""

    data: bytes
    seed: int
    model: str = ""
    nsfw: bool | None = None  # the backend's own content check, when it has one
    cost_usd: Decimal | None = None  # what the backend charged us, when it says
    details: dict = field(default_factory=dict)  # steps, CFG, scheduler... kept on the row


class BackendError(Exception):
    """Generation failed. `detail` is for logs and the admin, never shown raw to the user."""

    def __init__(self, detail: str, *, provider_code: str = "", retryable: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.provider_code = provider_code
        self.retryable = retryable


class GenerationBackend(abc.ABC):
    name = "base"
    # True for a backend that only waits on another service (Runware) or draws in milliseconds
    # (preview): a sync request may render it in the web process itself, skipping the Celery round
    # trip (see generation.dispatch). A GPU backend must run on its worker.
    renders_in_web = False
    # True when an image takes seconds (a GPU, a remote service): the pipeline hands its database
    # connection back to the pool meanwhile, so many waiting generations share a few connections.
    waits_seconds = True

    @abc.abstractmethod
    def generate(self, request: ImageRequest, *, deadline: float) -> BackendImage:
        """Make one image before `deadline` (a time.monotonic() value) or raise BackendError."""

    def generate_batch(self, requests: list[ImageRequest], *, deadline: float) -> list["BackendImage | Exception"]:
        """The images of one request (n > 1), in order; each a BackendImage or the exception that
        failed that image alone. This default makes them one after another; a GPU backend runs
        them as one batch."""
        results = []
        for request in requests:
            try:
                results.append(self.generate(request, deadline=deadline))
            except Exception as exc:
                results.append(exc)
        return results
