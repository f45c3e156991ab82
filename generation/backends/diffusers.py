"""Our own GPUs: SDXL-architecture anime checkpoints (Animagine XL 4.0, Illustrious-XL, NoobAI-XL)
run by diffusers inside the Celery worker, one worker per GPU.

DIFFUSERS_MODEL is a hub id, a local diffusers folder, or a single .safetensors checkpoint (how
these models are released). A single file holds only weights: the pipeline's configs and
tokenizers come from DIFFUSERS_CONFIG (a local diffusers folder, so nothing touches the network),
or, when that is unset, from SDXL base's repository on the hub, which diffusers fetches and caches.

The pipeline is loaded once per worker process (generation.worker warms it at start), never per
request; one image runs at a time per process, since the pipeline's scheduler is stateful and the
GPU is busy anyway. This module imports torch: only workers with the `[gpu]` extra load it.
"""

import logging
import threading
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, schedulers
from django.conf import settings

from .. import catalog
from ..images import encode_webp
from ..models import ORIENTATIONS
from . import sdxl_prompts
from .base import BackendError, BackendImage, GenerationBackend, ImageRequest

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# The names the model cards and WebUIs use, besides any diffusers scheduler class name.
SCHEDULER_ALIASES = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
}
WARM_UP_STEPS = 2


def _setting(name: str, default):
    return getattr(settings, name, default)


class _DeadlinePassed(Exception):
    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


class DiffusersBackend(GenerationBackend):
    name = "diffusers"

    def __init__(self, pipe: StableDiffusionXLPipeline | None = None):
        """Loads this worker's model (GENERATION_WORKER_MODEL's checkpoint, else DIFFUSERS_MODEL);
        benchmarks pass a pipeline they built instead."""
        served = catalog.worker_model()
        self.model_id = served.id
        self.model = (served.diffusers_model or _setting("DIFFUSERS_MODEL", "")
                      or ("in-memory" if pipe is not None else ""))
        if not self.model:
            raise BackendError("DIFFUSERS_MODEL is not set", provider_code="configuration")
        device = _setting("DIFFUSERS_DEVICE", "") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        dtype_name = _setting("DIFFUSERS_DTYPE", "") or ("bf16" if self.device.type == "cuda" else "fp32")
        if dtype_name not in DTYPES:
            raise BackendError(f"DIFFUSERS_DTYPE must be one of {', '.join(DTYPES)}, got {dtype_name!r}",
                               provider_code="configuration")
        self.dtype_name, self.dtype = dtype_name, DTYPES[dtype_name]
        self.steps = served.steps if served.steps is not None else int(_setting("DIFFUSERS_STEPS", 28))
        self.cfg = served.cfg if served.cfg is not None else float(_setting("DIFFUSERS_CFG", 5.0))
        self.scheduler_name = _setting("DIFFUSERS_SCHEDULER", "EulerAncestralDiscreteScheduler")
        self.compile_mode = _setting("DIFFUSERS_COMPILE", "")
        self.compile_s: float | None = None  # the warm-up's first run of each size, with DIFFUSERS_COMPILE
        self._lock = threading.Lock()

        started = time.perf_counter()
        if pipe is None:
            pipe = load_pipeline(self.model, config=_setting("DIFFUSERS_CONFIG", ""), dtype=self.dtype,
                                 vae=_setting("DIFFUSERS_VAE", ""))
        elif pipe.unet.dtype != self.dtype:
            pipe.to(dtype=self.dtype)
        self.pipe = pipe
        self.pipe.scheduler = make_scheduler(self.scheduler_name, self.pipe.scheduler.config,
                                             prediction_type=_setting("DIFFUSERS_PREDICTION_TYPE", ""))
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        apply_speedups(self.pipe, channels_last=bool(_setting("DIFFUSERS_CHANNELS_LAST", False)),
                       fuse_qkv=bool(_setting("DIFFUSERS_FUSE_QKV", False)), compile_mode=self.compile_mode)
        self.load_s = time.perf_counter() - started
        log.info("diffusers: loaded %s on %s (%s) in %.1f s", self.model, self.device, self.dtype_name, self.load_s)

    @property
    def model_name(self) -> str:
        """What answers and XMP call the model: a hub id as is, a local folder by its name, a
        checkpoint by its file name without the extension."""
        path = Path(self.model)
        if path.is_file():
            return path.stem
        return path.name if path.is_dir() else self.model

    def warm_up(self) -> float:
        """One short run per size the API serves when compiling (torch.compile specialises on the
        latent shape), else one at the default size: kernels load and autotune here, not in the
        first paid request. Returns the seconds it took."""
        sizes = list(ORIENTATIONS.values()) if self.compile_mode else [ORIENTATIONS["portrait"]]
        started = time.perf_counter()
        with self._lock:
            for width, height in sizes:
                request = ImageRequest(prompt="1girl, solo", negative_prompt="lowres", width=width, height=height,
                                       allow_nsfw=True, seed=0)
                self._render(request, steps=WARM_UP_STEPS, deadline=float("inf"))
        seconds = time.perf_counter() - started
        if self.compile_mode:
            self.compile_s = seconds
        log.info("diffusers: warmed up %d size(s) in %.1f s", len(sizes), seconds)
        return seconds

    def generate(self, request: ImageRequest, *, deadline: float) -> BackendImage:
        return self._generate([request], deadline=deadline)[0]

    def generate_batch(self, requests: list[ImageRequest], *, deadline: float) -> list[BackendImage | Exception]:
        """One request's n images in one pipeline call (their prompts are the same; each image has
        its own seed's generator). A failure fails the batch: it is one run on the GPU."""
        if len({(r.prompt, r.negative_prompt, r.width, r.height, r.model_id) for r in requests}) != 1:
            return super().generate_batch(requests, deadline=deadline)
        try:
            return self._generate(requests, deadline=deadline)
        except BackendError as exc:
            return [exc] * len(requests)

    def _generate(self, requests: list[ImageRequest], *, deadline: float) -> list[BackendImage]:
        first = requests[0]
        if first.model_id and first.model_id != self.model_id:
            # Misrouted: this worker's queue is its model's (catalog.queue_for).
            raise BackendError(f"this worker serves {self.model_id!r}, not {first.model_id!r}",
                               provider_code="configuration")
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._lock.acquire(timeout=min(remaining, threading.TIMEOUT_MAX)):
            raise BackendError("no time left before the deadline", provider_code="deadline")
        try:
            started = time.perf_counter()
            pictures = self._render(first, steps=self.steps, deadline=deadline, seeds=[r.seed for r in requests])
            inference_ms = round((time.perf_counter() - started) * 1000)
        except _DeadlinePassed as stop:
            raise BackendError(f"deadline passed after step {stop.step + 1} of {self.steps}",
                               provider_code="timeout") from None
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise BackendError(f"out of GPU memory: {exc}", provider_code="oom", retryable=True) from None
        except Exception as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}", provider_code="pipeline") from exc
        finally:
            self._lock.release()
        return [BackendImage(
            data=encode_webp(picture),
            seed=request.seed,
            model=self.model_name,
            details={
                "backend": self.name,
                "model": self.model_name,
                "steps": self.steps,
                "CFGScale": self.cfg,
                "scheduler": self.scheduler_name,
                "dtype": self.dtype_name,
                "device": str(self.device),
                "inference_ms": inference_ms,
                **({"batch_size": len(requests)} if len(requests) > 1 else {}),
            },
        ) for request, picture in zip(requests, pictures, strict=True)]

    def _render(self, request: ImageRequest, *, steps: int, deadline: float, seeds: list[int] | None = None):
        """The images of `request`'s prompt, one per seed (default: the request's own): a list."""
        seeds = seeds or [request.seed]
        embeds = sdxl_prompts.encode(self.pipe, request.prompt, request.negative_prompt)
        # One generator per image: image k is the same as a single run with seeds[k].
        generators = [torch.Generator(self.device).manual_seed(seed) for seed in seeds]
        result = self.pipe(
            **embeds.pipeline_kwargs(),
            num_images_per_prompt=len(seeds),
            width=request.width,
            height=request.height,
            num_inference_steps=steps,
            guidance_scale=self.cfg,
            generator=generators,
            callback_on_step_end=_stop_at(deadline),
            output_type="pil",
        )
        return result.images


def _stop_at(deadline: float):
    """A step callback that abandons the run once the API's deadline has passed: the caller has
    been refunded by then, so finishing the image would only keep the GPU from the next one."""

    def callback(pipe, step, timestep, callback_kwargs):
        if time.monotonic() > deadline:
            raise _DeadlinePassed(step)
        return callback_kwargs

    return callback


def load_pipeline(model: str, *, config: str, dtype: torch.dtype, vae: str) -> StableDiffusionXLPipeline:
    path = Path(model)
    if path.is_file():
        local_config = bool(config) and Path(config).is_dir()
        try:
            pipe = StableDiffusionXLPipeline.from_single_file(
                str(path), config=config or None, torch_dtype=dtype, local_files_only=local_config,
            )
        except OSError as exc:
            raise BackendError(f"could not load {model}'s pipeline config ({exc}); set DIFFUSERS_CONFIG to a local "
                               "diffusers folder of an SDXL model", provider_code="configuration") from exc
    else:
        pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=dtype, use_safetensors=True,
                                                         local_files_only=path.is_dir())
    if vae:
        pipe.vae = load_vae(vae, dtype=dtype)
    elif dtype == torch.float16:
        # SDXL's own VAE overflows to NaN (a black image) in fp16: decode in fp32, as its config
        # asks, unless DIFFUSERS_VAE names a VAE fixed for fp16 (madebyollin/sdxl-vae-fp16-fix).
        pipe.vae.register_to_config(force_upcast=True)
    return pipe


def load_vae(vae: str, *, dtype: torch.dtype) -> AutoencoderKL:
    path = Path(vae)
    if path.is_file():
        return AutoencoderKL.from_single_file(str(path), torch_dtype=dtype)
    return AutoencoderKL.from_pretrained(vae, torch_dtype=dtype, local_files_only=path.is_dir())


def make_scheduler(name: str, config, *, prediction_type: str = ""):
    """A scheduler by WebUI name ("Euler a") or diffusers class name, over the model's own noise
    schedule. v-prediction checkpoints (NoobAI-XL V-Pred) ship SDXL's epsilon config, so their
    prediction type is set here, with the zero-terminal-SNR schedule they were trained on."""
    class_name, options = SCHEDULER_ALIASES.get(name, (name, {}))
    scheduler_class = getattr(schedulers, class_name, None)
    if not isinstance(scheduler_class, type) or not issubclass(scheduler_class, schedulers.SchedulerMixin):
        raise BackendError(f"DIFFUSERS_SCHEDULER {name!r} is not a diffusers scheduler", provider_code="configuration")
    if prediction_type:
        options = {**options, "prediction_type": prediction_type}
        if prediction_type == "v_prediction":
            options["rescale_betas_zero_snr"] = True
    return scheduler_class.from_config(config, **options)


def apply_speedups(pipe: StableDiffusionXLPipeline, *, channels_last: bool, fuse_qkv: bool, compile_mode: str) -> None:
    """The optional speed-ups bench/gpu.py measures; attention is PyTorch's SDPA by default."""
    if fuse_qkv:
        pipe.fuse_qkv_projections()
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if compile_mode:
        pipe.unet = torch.compile(pipe.unet, mode=compile_mode, fullgraph=True)
