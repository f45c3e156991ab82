"""The diffusers backend on a GPU, in one command that stops itself: seconds per image at the API's
three sizes, images per minute at batch 1/2/4, VAE decode time, the pipeline's own overhead per
step, peak GPU memory, and each optional speed-up (SDPA vs classic attention, channels-last, fused
QKV, torch.compile with its compile time) on and off. Writes one markdown table, with the device,
the versions and the date, to --out (default $OUT/gpu-bench.md when $OUT is set) and the raw
timings beside it as JSON.

The model is the full SDXL architecture (SDXL base's published configs, below) with random
weights: nothing is downloaded, and a network's speed does not depend on its weights. Each
"s/image" row goes through DiffusersBackend.generate(), as a worker runs it: both text encoders,
28 Euler a steps with CFG (two UNet passes per step), the VAE decode and the WEBP encode.

Rows run in order of importance under one time budget (--budget, from the start): a row that
would not fit in what is left is skipped with a note, and an image that would end past the
budget is stopped by the backend's own deadline. Every row is written out as soon as it is done,
so a run killed from outside still leaves the rows it finished.

    python bench/gpu.py                          # one CUDA GPU: bf16, 28 steps, CFG 5, 420 s budget
    python bench/gpu.py --rows sizes,compile --compile-mode max-autotune --budget 540
    python bench/gpu.py --tiny                   # CPU smoke run of the same code, tiny model

The goal on one H100 is a p50 under 1.6 s per 832x1280 image and 45 images a minute at the best
batch. scripts/gpu_bench_device.sh runs this on the lent GPU machine (bench/README.md, "GPU").
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STARTED = time.monotonic()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# SDXL base 1.0's component configs (stabilityai/stable-diffusion-xl-base-1.0), the architecture
# Animagine XL 4.0, Illustrious-XL and NoobAI-XL share: 2.57 B UNet parameters, 83.7 M VAE,
# 123 M + 695 M in the two text encoders (tests/test_gpu_bench.py counts them).
FULL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "norm_num_groups": 32,
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
FULL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
FULL_TEXT_ENCODER = {  # CLIP ViT-L/14
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
FULL_TEXT_ENCODER_2 = {  # OpenCLIP ViT-bigG/14
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
# What each speed-up row switches on (everything else off). "sdpa" is the backend's default:
# PyTorch's scaled_dot_product_attention, eager, contiguous memory format.
CONFIGS = {
    "sdpa": {},
    "classic-attn": {"classic_attention": True},
    "channels-last": {"channels_last": True},
    "fused-qkv": {"fuse_qkv": True},
    "cl+fused": {"channels_last": True, "fuse_qkv": True},
    "compile": {"channels_last": True, "fuse_qkv": True, "compile": True},
}
# Row groups in the order they run (the budget cuts from the end). "compile-sizes" compiles the
# other two sizes too, as the worker's warm-up does with DIFFUSERS_COMPILE.
ROW_GROUPS = ["sizes", "vae", "overhead", "batches", "fused-qkv", "channels-last", "cl+fused", "classic-attn",
              "compile", "compile-sizes"]
# A first torch.compile of the SDXL UNet, for the budget check before the compile row (minutes
# on a GPU with the default mode; max-autotune takes longer).
COMPILE_ESTIMATE_S = {"default": 150, "reduce-overhead": 180, "max-autotune-no-cudagraphs": 400,
                      "max-autotune": 420}
PROMPT = ("1girl, solo, long silver hair, purple eyes, school uniform, cherry blossoms, wind, smile, "
          "looking at viewer, masterpiece, high score, great score, absurdres")
NEGATIVE = ("lowres, bad anatomy, bad hands, text, error, missing finger, extra digits, fewer digits, cropped, "
            "worst quality, low quality, low score, bad score, average score, signature, watermark, username, blurry")
COLUMNS = ["measurement", "config", "size", "batch", "p50", "p90", "img/min", "first s", "peak GiB", "notes"]


@dataclass
class Row:
    measurement: str  # with its unit: "s/image", "s/batch", "VAE decode ms", "overhead ms/step"
    config: str
    size: str
    batch: int = 1
    p50: float | None = None
    p90: float | None = None
    per_minute: float | None = None  # images a minute, for rows that make images
    first_s: float | None = None  # the warm-up run; with torch.compile, the compile plus one image
    peak_gib: float | None = None
    notes: str = ""
    samples: list[float] = field(default_factory=list)

    def cells(self) -> list[str]:
        def number(value, digits):
            return "" if value is None else f"{value:.{digits}f}"

        digits = 1 if "ms" in self.measurement else 3
        notes = "; ".join(part for part in (f"n={len(self.samples)}" if self.samples else "", self.notes) if part)
        return [self.measurement, self.config, self.size, str(self.batch), number(self.p50, digits), number(self.p90, digits),
                number(self.per_minute, 1), number(self.first_s, 1), number(self.peak_gib, 1), notes]


class OutOfBudget(Exception):
    pass


class Bench:
    def __init__(self, *, backend, torch, device: str, deadline: float, out: Path | None, header: list[str],
                 steps: int):
        self.backend, self.torch, self.device = backend, torch, device
        self.deadline, self.out, self.header, self.steps = deadline, out, header, steps
        self.rows: list[Row] = []
        self.image_s: float | None = None  # the baseline's p50 at 832x1280, for the budget estimates

    # -- bookkeeping ------------------------------------------------------------------------------

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, *, needs_s: float) -> str:
        """Empty when `needs_s` fits in what is left of the budget, else the reason to skip."""
        left = self.left_s()
        return "" if needs_s <= left else f"skipped: {max(left, 0):.0f} s of the budget left, needs about {needs_s:.0f} s"

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print("| " + " | ".join(row.cells()) + " |", flush=True)
        self.write()
        return row

    def write(self) -> None:
        if self.out is None:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(render(header=self.header, rows=self.rows, elapsed_s=time.monotonic() - STARTED))
        self.out.with_suffix(".json").write_text(json.dumps(
            {"header": self.header, "rows": [asdict(row) for row in self.rows]}, indent=1))

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.device == "cuda" else None

    def guarded(self, row: Row, measure) -> Row:
        """Run `measure(row)`; a failure (out of memory, a compile error, the budget) becomes the
        row's note instead of ending the run, so one bad row never costs the whole table."""
        self.reset_peak()
        try:
            measure(row)
        except OutOfBudget as stop:
            row.notes = f"{row.notes}; {stop}".lstrip("; ")
        except Exception as exc:  # noqa: BLE001 (the table must still be written)
            if self.device == "cuda":
                self.torch.cuda.empty_cache()
            row.notes = f"{row.notes}; failed: {type(exc).__name__}: {str(exc)[:160]}".lstrip("; ")
        row.peak_gib = self.peak_gib()
        return self.add(row)

    # -- measurements -----------------------------------------------------------------------------

    def one_image(self, *, width: int, height: int, seed: int) -> float:
        """One image through DiffusersBackend.generate(), stopped by the backend at the budget."""
        from generation.backends.base import BackendError, ImageRequest

        request = ImageRequest(prompt=PROMPT, negative_prompt=NEGATIVE, width=width, height=height, allow_nsfw=True,
                               seed=seed)
        started = time.perf_counter()
        try:
            self.backend.generate(request, deadline=self.deadline)
        except BackendError as exc:
            if exc.provider_code in ("deadline", "timeout"):
                raise OutOfBudget(f"stopped at the time budget {time.perf_counter() - started:.1f} s into an image "
                                  f"({exc})") from None
            raise
        return time.perf_counter() - started

    def images(self, *, config: str, size: str, runs: int, note: str = "") -> Row:
        from generation.models import ORIENTATIONS

        width, height = ORIENTATIONS[size]
        row = Row("s/image", config, size_label(size), notes=note)

        def measure(row):
            row.first_s = self.one_image(width=width, height=height, seed=0)
            for seed in range(1, runs + 1):
                row.samples.append(self.one_image(width=width, height=height, seed=seed))
                summarise(row, images=1)

        return self.guarded(row, measure)

    def batch(self, *, batch: int, runs: int) -> Row:
        """`batch` images of one prompt from one pipeline call, each WEBP-encoded: the work a
        worker taking DIFFUSERS_MAX_BATCH queued requests of one size would do."""
        import torch

        from generation.backends import sdxl_prompts
        from generation.images import encode_webp
        from generation.models import ORIENTATIONS

        width, height = ORIENTATIONS["portrait"]
        pipe = self.backend.pipe
        row = Row("s/batch", "sdpa", size_label("portrait"), batch=batch)

        def one():
            if self.image_s and self.left_s() < 1.5 * batch * self.image_s:
                raise OutOfBudget("stopped at the time budget")
            started = time.perf_counter()
            embeds = sdxl_prompts.encode(pipe, PROMPT, NEGATIVE)
            result = pipe(**embeds.pipeline_kwargs(), num_images_per_prompt=batch, width=width, height=height,
                          num_inference_steps=self.steps, guidance_scale=self.backend.cfg,
                          generator=torch.Generator(self.backend.device).manual_seed(0), output_type="pil")
            for image in result.images:
                encode_webp(image)
            return time.perf_counter() - started

        def measure(row):
            row.first_s = one()
            for _ in range(runs):
                row.samples.append(one())
                summarise(row, images=batch)

        return self.guarded(row, measure)

    def vae_decode(self, *, size: str, runs: int) -> Row:
        """The VAE decode alone (the pipeline's last step before the image), from random latents."""
        from generation.models import ORIENTATIONS

        width, height = ORIENTATIONS[size]
        vae = self.backend.pipe.vae
        row = Row("VAE decode ms", "sdpa", size_label(size))

        def measure(row):
            latents = self.torch.randn(1, vae.config.latent_channels, height // 8, width // 8,
                                       device=self.backend.device, dtype=vae.dtype)

            def one():
                self.sync()
                started = time.perf_counter()
                with self.torch.inference_mode():
                    vae.decode(latents / vae.config.scaling_factor, return_dict=False)
                self.sync()
                return (time.perf_counter() - started) * 1000

            row.first_s = one() / 1000
            row.samples = [one() for _ in range(runs)]
            row.p50, row.p90 = percentile(row.samples, 50), percentile(row.samples, 90)
            row.notes = str(vae.dtype).removeprefix("torch.")

        return self.guarded(row, measure)

    def overhead(self, *, runs: int) -> Row:
        """What the pipeline's loop costs beyond its UNet passes: the denoising loop's time per step
        (a pipeline call that stops at the latents, prompt embeddings given) less a bare loop of
        the same UNet calls on the same inputs. The difference is the scheduler step, the CFG
        arithmetic, the callbacks and Python, as far as the GPU waits for them."""
        from generation.backends import sdxl_prompts
        from generation.models import ORIENTATIONS

        width, height = ORIENTATIONS["portrait"]
        pipe, torch = self.backend.pipe, self.torch
        row = Row("overhead ms/step", "sdpa", size_label("portrait"))

        def measure(row):
            embeds = sdxl_prompts.encode(pipe, PROMPT, NEGATIVE)

            def pipeline_loop():
                self.sync()
                started = time.perf_counter()
                pipe(**embeds.pipeline_kwargs(), width=width, height=height, num_inference_steps=self.steps,
                     guidance_scale=self.backend.cfg, generator=torch.Generator(self.backend.device).manual_seed(0),
                     output_type="latent")
                self.sync()
                return (time.perf_counter() - started) * 1000 / self.steps

            unet = pipe.unet
            latents = torch.randn(2, unet.config.in_channels, height // 8, width // 8, device=self.backend.device,
                                  dtype=unet.dtype)
            context = torch.cat([embeds.negative_prompt_embeds, embeds.prompt_embeds]).to(unet.dtype)
            pooled = torch.cat([embeds.negative_pooled_prompt_embeds, embeds.pooled_prompt_embeds]).to(unet.dtype)
            time_ids = torch.tensor([[height, width, 0, 0, height, width]] * 2, device=self.backend.device,
                                    dtype=unet.dtype)
            pipe.scheduler.set_timesteps(self.steps, device=self.backend.device)
            timesteps = pipe.scheduler.timesteps

            def unet_loop():
                self.sync()
                started = time.perf_counter()
                with torch.inference_mode():
                    for t in timesteps:
                        unet(latents, t, encoder_hidden_states=context,
                             added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}, return_dict=False)
                self.sync()
                return (time.perf_counter() - started) * 1000 / len(timesteps)

            pipeline_loop(), unet_loop()  # warm-up
            pipeline_ms = [pipeline_loop() for _ in range(runs)]
            unet_ms = [unet_loop() for _ in range(runs)]
            row.samples = [p - u for p, u in zip(pipeline_ms, unet_ms, strict=True)]
            row.p50, row.p90 = percentile(row.samples, 50), percentile(row.samples, 90)
            row.notes = (f"pipeline loop {statistics.median(pipeline_ms):.1f} ms/step, bare UNet (CFG pair) "
                         f"{statistics.median(unet_ms):.1f} ms/step")

        return self.guarded(row, measure)

    def skipped(self, *, measurement: str, config: str, size: str, reason: str, batch: int = 1) -> Row:
        return self.add(Row(measurement, config, size_label(size), batch=batch, notes=reason))


def size_label(size: str) -> str:
    from generation.models import ORIENTATIONS

    width, height = ORIENTATIONS[size]
    return f"{size} {width}x{height}"


def summarise(row: Row, *, images: int) -> None:
    row.p50, row.p90 = percentile(row.samples, 50), percentile(row.samples, 90)
    row.per_minute = 60 * images / row.p50


def configure(backend, *, compile_mode: str, classic_attention=False, channels_last=False, fuse_qkv=False,
              compile=False) -> None:
    """Undo the previous row's speed-ups, then apply this row's through the backend's own code."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from generation.backends.diffusers import apply_speedups

    pipe = backend.pipe
    pipe.unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    torch._dynamo.reset()
    if getattr(pipe, "fusing_unet", False) or getattr(pipe, "fusing_vae", False):
        pipe.unfuse_qkv_projections()
    for model in (pipe.unet, pipe.vae):
        model.set_attn_processor(AttnProcessor() if classic_attention else AttnProcessor2_0())
        model.to(memory_format=torch.contiguous_format)
    apply_speedups(pipe, channels_last=channels_last, fuse_qkv=fuse_qkv, compile_mode=compile_mode if compile else "")


def run_rows(bench: Bench, *, groups: list[str], runs: int, variant_runs: int, batches: list[int],
             compile_mode: str) -> None:
    """Every row group asked for, in ROW_GROUPS order, each skipped with a note when the budget
    that is left cannot hold it."""
    from generation.models import ORIENTATIONS

    backend = bench.backend

    def estimate(images: float) -> float:
        # Before the first image is timed nothing is known: let the first row try.
        return images * bench.image_s if bench.image_s else 0.0

    configure(backend, compile_mode=compile_mode)
    if "sizes" in groups:
        for size in ORIENTATIONS:
            reason = bench.fits(needs_s=estimate(runs + 1))
            row = (bench.skipped(measurement="s/image", config="sdpa", size=size, reason=reason) if reason
                   else bench.images(config="sdpa", size=size, runs=runs))
            if size == "portrait" and row.p50:
                bench.image_s = row.p50
    if "vae" in groups:
        for size in ORIENTATIONS:
            reason = bench.fits(needs_s=estimate(0.5))
            if reason:
                bench.skipped(measurement="VAE decode ms", config="sdpa", size=size, reason=reason)
            else:
                bench.vae_decode(size=size, runs=5 if bench.device == "cuda" else 1)
    if "overhead" in groups:
        overhead_runs = 3 if bench.device == "cuda" else 1
        reason = bench.fits(needs_s=estimate(2 * (overhead_runs + 1)))
        if reason:
            bench.skipped(measurement="overhead ms/step", config="sdpa", size="portrait", reason=reason)
        else:
            bench.overhead(runs=overhead_runs)
    if "batches" in groups:
        batch_runs = max(1, runs // 4)
        for batch in batches:
            reason = bench.fits(needs_s=estimate(batch * (batch_runs + 1)))
            if reason:
                bench.skipped(measurement="s/batch", config="sdpa", size="portrait", batch=batch, reason=reason)
            else:
                bench.batch(batch=batch, runs=batch_runs)
    for name in ("fused-qkv", "channels-last", "cl+fused", "classic-attn"):
        if name not in groups:
            continue
        reason = bench.fits(needs_s=estimate(variant_runs + 1.5))
        if reason:
            bench.skipped(measurement="s/image", config=name, size="portrait", reason=reason)
            continue
        configure(backend, compile_mode=compile_mode, **CONFIGS[name])
        bench.images(config=name, size="portrait", runs=variant_runs)
    compile_sizes = [size for group, sizes in (("compile", ["portrait"]), ("compile-sizes", ["square", "landscape"]))
                     if group in groups for size in sizes]
    if compile_sizes:
        configure(backend, compile_mode=compile_mode, **CONFIGS["compile"])
    for size in compile_sizes:
        compile_s = 0 if bench.device != "cuda" else COMPILE_ESTIMATE_S.get(compile_mode, 420)
        reason = bench.fits(needs_s=compile_s + estimate(variant_runs + 1))
        name = f"compile ({compile_mode})"
        if reason:
            bench.skipped(measurement="s/image", config=name, size=size, reason=reason)
        else:
            bench.images(config=name, size=size, runs=variant_runs,
                         note="first s = compile for this size + one image")
    configure(backend, compile_mode=compile_mode)


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def render(*, header: list[str], rows: list[Row], elapsed_s: float) -> str:
    lines = ["# bench/gpu.py: SDXL with random weights through DiffusersBackend", ""]
    lines += [f"- {line}" for line in header]
    lines += [f"- wall time of the whole run so far: {elapsed_s:.0f} s", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines += ["", "s/image: p50/p90 of n images after one warm-up image (first s), each through "
              "DiffusersBackend.generate() (text encoders, every step with CFG, VAE decode, WEBP encode); "
              "img/min = 60 / p50. s/batch: one pipeline call for `batch` images of one prompt. "
              "VAE decode ms: the decode alone. overhead ms/step: the pipeline's denoising loop per step less "
              "a bare loop of the same UNet calls. peak GiB: torch.cuda.max_memory_allocated() during the row.", ""]
    return "\n".join(lines)


def build(*, tiny: bool, device: str, workdir: Path):
    """The pipeline, its networks created directly on `device`."""
    from tests import sdxl_tiny

    if tiny:
        return sdxl_tiny.build_tiny_pipeline(workdir)
    return sdxl_tiny.build_pipeline(unet=FULL_UNET, vae=FULL_VAE, text_encoder=FULL_TEXT_ENCODER,
                                    text_encoder_2=FULL_TEXT_ENCODER_2, workdir=workdir, device=device)


def describe(*, torch, diffusers, backend, device: str, tiny: bool, steps: int, cfg: float, budget_s: float,
             build_s: float) -> list[str]:
    import transformers

    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        machine = (f"{torch.cuda.get_device_name()} ({props.total_memory / 2**30:.0f} GiB, "
                   f"{props.multi_processor_count} SMs), CUDA {torch.version.cuda}, "
                   f"cuDNN {torch.backends.cudnn.version()}")
        sdpa = ", ".join(name for name, on in (("flash", torch.backends.cuda.flash_sdp_enabled()),
                                               ("mem-efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
                                               ("cudnn", torch.backends.cuda.cudnn_sdp_enabled()),
                                               ("math", torch.backends.cuda.math_sdp_enabled())) if on)
    else:
        machine, sdpa = f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})", "default"
    return [
        f"model: {'tiny SDXL (test configs)' if tiny else 'SDXL base 1.0 architecture'}, random weights",
        f"device: {machine}",
        f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"versions: Python {platform.python_version()}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"transformers {transformers.__version__}",
        f"settings: {backend.dtype_name}, {steps} steps, CFG {cfg}, {backend.scheduler_name}; SDPA backends enabled: "
        f"{sdpa}",
        f"pipeline built in {build_s:.0f} s; time budget {budget_s:.0f} s from the start",
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random model on the CPU (smoke run)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 28; 2 with --tiny)")
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="default bf16; fp32 with --tiny")
    parser.add_argument("--runs", type=int, help="timed images per size after the warm-up (default 8; 2 with --tiny)")
    parser.add_argument("--variant-runs", type=int, help="timed images per speed-up row (default 5; 1 with --tiny)")
    parser.add_argument("--rows", default=",".join(ROW_GROUPS), help=f"row groups, from {','.join(ROW_GROUPS)}")
    parser.add_argument("--batches", default="1,2,4", help="batch sizes for the images-per-minute rows")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for the compile rows")
    parser.add_argument("--budget", type=float, default=420, help="seconds from the start after which rows are skipped")
    parser.add_argument("--out", type=Path, help="markdown file to write (default $OUT/gpu-bench.md if $OUT is set)")
    args = parser.parse_args(argv)
    steps = args.steps or (2 if args.tiny else 28)
    runs = args.runs or (2 if args.tiny else 8)
    variant_runs = args.variant_runs or (1 if args.tiny else 5)
    groups = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = set(groups) - set(ROW_GROUPS)
    if unknown:
        parser.error(f"unknown row groups: {', '.join(sorted(unknown))}")
    out = args.out or (Path(os.environ["OUT"]) / "gpu-bench.md" if os.environ.get("OUT") else None)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import diffusers
    import torch
    from django.conf import settings

    from generation.backends.diffusers import DiffusersBackend

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --tiny for a CPU smoke run")
    settings.DIFFUSERS_DEVICE = device
    settings.DIFFUSERS_DTYPE = args.dtype or ("fp32" if args.tiny else "bf16")
    settings.DIFFUSERS_STEPS = steps
    settings.DIFFUSERS_CFG = args.cfg

    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        pipe = build(tiny=args.tiny, device=device, workdir=Path(workdir))
        backend = DiffusersBackend(pipe=pipe)
        build_s = time.perf_counter() - started

    header = describe(torch=torch, diffusers=diffusers, backend=backend, device=device, tiny=args.tiny, steps=steps,
                      cfg=args.cfg, budget_s=args.budget, build_s=build_s)
    print("\n".join(header), flush=True)
    print("| " + " | ".join(COLUMNS) + " |", flush=True)
    bench = Bench(backend=backend, torch=torch, device=device, deadline=STARTED + args.budget, out=out, header=header,
                  steps=steps)
    run_rows(bench, groups=groups, runs=runs, variant_runs=variant_runs,
             batches=[int(b) for b in args.batches.split(",") if b.strip()], compile_mode=args.compile_mode)
    bench.write()
    print(f"\ndone in {time.monotonic() - STARTED:.0f} s" + (f"; table in {out}" if out else ""), flush=True)
    return bench


if __name__ == "__main__":
    main()
