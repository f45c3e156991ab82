"""Runware's REST API (https://runware.ai/docs): one `imageInference` task per try, POSTed as a JSON
array to RUNWARE_API_URL with the key as a Bearer token.

Every try gets a fresh UUIDv4 `taskUUID`, so a retried task is never mistaken for the first one.
Connection errors, 429 and 5xx are retried with exponential backoff and full jitter, all inside the
caller's deadline; Runware's `errors` array becomes a BackendError carrying Runware's code.
"""

import base64
import binascii
import json
import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from .. import catalog
from .base import BackendError, BackendImage, GenerationBackend, ImageRequest

log = logging.getLogger(__name__)

# Backoff before retry n (0-based) is uniform in [0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**n)].
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
CONNECT_TIMEOUT_S = 5.0
# A try that cannot get at least this long before the deadline is not started.
MIN_TRY_S = 0.5
# An SDXL image at 1280x832 is well under 2 MB; anything near these caps is not an image we want.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_RESPONSE_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024  # base64 inflates by 4/3, plus the JSON around it
RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
# Runware's seeds start at 1; ours run from 0, so 0 is sent as the first value outside our range.
RUNWARE_SEED_FOR_ZERO = 2**32


class _TransientFailure(Exception):
    """A try that may succeed if repeated (connection error, 429, 5xx)."""

    def __init__(self, detail: str, *, provider_code: str, retry_after_s: float | None = None):
        super().__init__(detail)
        self.detail = detail
        self.provider_code = provider_code
        self.retry_after_s = retry_after_s


class RunwareBackend(GenerationBackend):
    name = "runware"
    renders_in_web = True
    # base64Data saves the second round trip a URL would need; URL answers are still understood.
    output_type = "base64Data"

    def __init__(self):
        if not settings.RUNWARE_API_KEY:
            raise BackendError("RUNWARE_API_KEY is not set", provider_code="configuration")
        self.api_url = settings.RUNWARE_API_URL
        api = urlsplit(self.api_url)
        self._api_origin = (api.scheme, api.netloc)
        self._image_hosts = {host.lower() for host in settings.RUNWARE_IMAGE_HOSTS} | {api.hostname or ""}
        # One pooled client per process, shared by the worker's threads: httpx.Client is thread-safe
        # and keeps TLS connections to Runware alive between images.
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {settings.RUNWARE_API_KEY}", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,
        )

    def generate(self, request: ImageRequest, *, deadline: float) -> BackendImage:
        max_tries = settings.RUNWARE_MAX_RETRIES + 1
        if deadline - time.monotonic() < MIN_TRY_S:
            raise BackendError("no time left before the deadline to call Runware", provider_code="deadline")
        tries = 0
        while True:
            task = self._task(request)
            tries += 1
            try:
                item = self._run_task(task, deadline=deadline)
            except _TransientFailure as failure:
                log.warning("runware try %d/%d failed (task %s): %s", tries, max_tries, task["taskUUID"],
                            failure.detail)
                delay = self._backoff_s(tries - 1, failure.retry_after_s)
                if tries >= max_tries or time.monotonic() + delay + MIN_TRY_S > deadline:
                    raise BackendError(f"Runware failed after {tries} tries: {failure.detail}",
                                       provider_code=failure.provider_code, retryable=True) from None
                time.sleep(delay)
                continue
            return self._image(item, task, request, tries=tries, deadline=deadline)

    def generate_batch(self, requests: list[ImageRequest], *, deadline: float) -> list[BackendImage | Exception]:
        """A request's n images as n concurrent tasks (the shared client is thread-safe), so n
        images take about as long as one; each succeeds or fails on its own."""
        if len(requests) == 1:
            return super().generate_batch(requests, deadline=deadline)
        with ThreadPoolExecutor(max_workers=len(requests), thread_name_prefix="runware-batch") as pool:
            futures = [pool.submit(self.generate, request, deadline=deadline) for request in requests]
        return [future.exception() or future.result() for future in futures]

    def _task(self, request: ImageRequest) -> dict:
        model = catalog.get_model(request.model_id)
        task = {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "positivePrompt": request.prompt,
            "negativePrompt": request.negative_prompt,
            "width": request.width,
            "height": request.height,
            "model": model.runware_air or settings.RUNWARE_MODEL,
            "steps": model.steps if model.steps is not None else settings.RUNWARE_STEPS,
            "CFGScale": model.cfg if model.cfg is not None else settings.RUNWARE_CFG_SCALE,
            "scheduler": settings.RUNWARE_SCHEDULER,
            "seed": request.seed or RUNWARE_SEED_FOR_ZERO,
            "outputType": self.output_type,
            "outputFormat": "WEBP",
            "numberResults": 1,
            "includeCost": True,
        }
        if not request.allow_nsfw:
            # Runware's current name for its checker; the older top-level `checkNSFW` is deprecated.
            task["safety"] = {"checkContent": True}
        return task

    def _run_task(self, task: dict, *, deadline: float) -> dict:
        """POST one task and return its `data` item, or raise _TransientFailure / BackendError."""
        try:
            with self._client.stream("POST", self.api_url, json=[task], timeout=self._timeout(deadline)) as response:
                body = _read_capped(response, MAX_RESPONSE_BYTES, deadline=deadline)
        except httpx.ReadTimeout:
            # Runware may still be working (and billing) on this task, and the read timeout ran to
            # the deadline, so there is no time for another try.
            raise BackendError("timed out waiting for Runware's answer", provider_code="timeout") from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _TransientFailure(f"{type(exc).__name__}: {exc}", provider_code="connection") from None
        except httpx.HTTPError as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}", provider_code="http") from None

        payload = _json_or_none(body)
        error_code, error_message = _first_error(payload)
        if response.status_code in RETRYABLE_STATUSES:
            raise _TransientFailure(
                f"HTTP {response.status_code}" + (f" {error_code}: {error_message}" if error_code else ""),
                provider_code=error_code or f"http_{response.status_code}",
                retry_after_s=_retry_after_s(response),
            )
        item = _result_for(payload, task["taskUUID"])
        if item is not None and response.status_code == 200:
            return item
        if error_code:
            raise BackendError(f"Runware {error_code}: {error_message}", provider_code=error_code)
        if response.status_code != 200:
            raise BackendError(f"HTTP {response.status_code} from Runware", provider_code=f"http_{response.status_code}")
        if payload is None:
            raise BackendError("Runware's answer is not JSON", provider_code="invalid_response")
        raise BackendError(f"Runware's answer has no result for task {task['taskUUID']}", provider_code="no_result")

    def _image(self, item: dict, task: dict, request: ImageRequest, *, tries: int, deadline: float) -> BackendImage:
        data = self._image_bytes(item, deadline=deadline)
        nsfw = item.get("NSFWContent")
        if not request.allow_nsfw and not isinstance(nsfw, bool):
            # allowNSFW=false is a promise: an image whose check did not run is not returned.
            raise BackendError("Runware's answer lacks NSFWContent although the check was asked for",
                               provider_code="nsfw_check_missing")
        return BackendImage(
            data=data,
            seed=_int_or(item.get("seed"), task["seed"]),
            model=task["model"],
            nsfw=nsfw if isinstance(nsfw, bool) else None,
            cost_usd=_decimal_or_none(item.get("cost")),
            details={
                "backend": self.name,
                "taskUUID": task["taskUUID"],
                "imageUUID": item.get("imageUUID", ""),
                "model": task["model"],
                "steps": task["steps"],
                "CFGScale": task["CFGScale"],
                "scheduler": task["scheduler"],
                "outputType": task["outputType"],
                "tries": tries,
            },
        )

    def _image_bytes(self, item: dict, *, deadline: float) -> bytes:
        if item.get("imageBase64Data"):
            return _decode_base64(item["imageBase64Data"])
        if item.get("imageDataURI"):
            _, _, encoded = str(item["imageDataURI"]).partition(",")
            return _decode_base64(encoded)
        if item.get("imageURL"):
            return self._download(str(item["imageURL"]), deadline=deadline)
        raise BackendError("Runware's result has no image", provider_code="no_image")

    def _download(self, url: str, *, deadline: float) -> bytes:
        if not self._may_fetch(url):
            raise BackendError(f"refused to fetch an image from {url[:200]!r}: host not allowed",
                               provider_code="image_host_not_allowed")
        try:
            with self._client.stream("GET", url, timeout=self._timeout(deadline)) as response:
                if response.status_code != 200:
                    raise BackendError(f"HTTP {response.status_code} fetching the image",
                                       provider_code=f"image_http_{response.status_code}")
                return _read_capped(response, MAX_IMAGE_BYTES, deadline=deadline)
        except httpx.HTTPError as exc:
            raise BackendError(f"fetching the image: {type(exc).__name__}: {exc}",
                               provider_code="image_download") from None

    def _may_fetch(self, url: str) -> bool:
        """Only Runware's image hosts over https, or the configured API origin itself (which may be
        plain http on a test machine): never an arbitrary URL a response happens to contain."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return False
        if parts.username or parts.password:
            return False
        if (parts.scheme, parts.netloc) == self._api_origin:
            return True
        return parts.scheme == "https" and host in self._image_hosts

    def _timeout(self, deadline: float) -> httpx.Timeout:
        remaining = max(0.001, deadline - time.monotonic())
        return httpx.Timeout(remaining, connect=min(CONNECT_TIMEOUT_S, remaining))

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        # Full jitter, so workers that failed together do not come back together.
        delay = random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt))
        return max(delay, retry_after_s or 0.0)


def _read_capped(response: httpx.Response, limit: int, *, deadline: float) -> bytes:
    """The body, refusing more than `limit` bytes and stopping at the deadline: httpx's read
    timeout applies per chunk, so a slow trickle would otherwise run past it."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BackendError(f"answer of {declared} bytes is over the {limit}-byte cap", provider_code="too_large")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise BackendError(f"answer is over the {limit}-byte cap", provider_code="too_large")
        if time.monotonic() > deadline:
            raise BackendError("timed out reading Runware's answer", provider_code="timeout")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_or_none(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _first_error(payload) -> tuple[str, str]:
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if not errors or not isinstance(errors, list) or not isinstance(errors[0], dict):
        return "", ""
    first = errors[0]
    return str(first.get("code") or "unknown"), str(first.get("message") or "")[:1000]


def _result_for(payload, task_uuid: str) -> dict | None:
    data = payload.get("data") if isinstance(payload, dict) else None
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and item.get("taskUUID") == task_uuid:
            return item
    return None


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None  # absent, or an HTTP date: our own backoff applies


def _decode_base64(encoded) -> bytes:
    if not isinstance(encoded, str) or len(encoded) > MAX_RESPONSE_BYTES:
        raise BackendError("Runware's base64 image is not a string or too large", provider_code="invalid_image")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BackendError(f"Runware's base64 image does not decode: {exc}", provider_code="invalid_image") from None


def _decimal_or_none(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        # Through str, so 0.0013 stays 0.0013 rather than the float's binary expansion.
        cost = Decimal(str(value))
    except InvalidOperation:
        return None
    return cost if cost.is_finite() else None


def _int_or(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
