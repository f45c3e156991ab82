"""The diffusers backend on a GPU: seconds per image at the API's three sizes, images per minute at
batch 1/2/4, peak GPU memory, and each optional speed-up on and off.

The model is the full SDXL architecture (SDXL base's published configs, below) with random
weights: nothing can be downloaded, and a network's speed does not depend on its weights. Each
image goes through DiffusersBackend.generate(), as a worker runs it: both text encoders, 28 Euler a
steps with CFG (two UNet passes per step), the VAE decode and the WEBP encode.

    .venv/bin/python bench/gpu.py                      # one CUDA GPU: bf16, 28 steps, CFG 5
    .venv/bin/python bench/gpu.py --configs sdpa,compile --compile-mode max-autotune
    .venv/bin/python bench/gpu.py --tiny               # CPU smoke run of the same code, tiny model

The goal on one H100 is a p50 under 1.6 s per 832x1280 image (about 40 images a minute).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"portrait": (832, 1280), "square": (1024, 1024), "landscape": (1280, 832)}
# SDXL base 1.0's component configs (stabilityai/stable-diffusion-xl-base-1.0), the architecture
# Animagine XL 4.0, Illustrious-XL and NoobAI-XL share.
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
# Each row: what is switched on (everything else off). "sdpa" is the backend's default.
CONFIGS = {
    "sdpa": {},
    "classic-attn": {"classic_attention": True},
    "channels-last": {"channels_last": True},
    "fused-qkv": {"fuse_qkv": True},
    "cl+fused": {"channels_last": True, "fuse_qkv": True},
    "compile": {"channels_last": True, "fuse_qkv": True, "compile": True},
}
PROMPT = ("1girl, solo, long silver hair, purple eyes, school uniform, cherry blossoms, wind, smile, "
          "looking at viewer, masterpiece, high score, great score, absurdres")
NEGATIVE = ("lowres, bad anatomy, bad hands, text, error, missing finger, extra digits, fewer digits, cropped, "
            "worst quality, low quality, low score, bad score, average score, signature, watermark, username, blurry")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random model on the CPU (smoke run)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 28; 2 with --tiny)")
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--runs", type=int, help="timed images per size after warm-up (default 10; 3 with --tiny)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"rows to run, from {','.join(CONFIGS)}")
    parser.add_argument("--batches", default="1,2,4", help="batch sizes for the images-per-minute table")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for the compile row")
    args = parser.parse_args()
    steps = args.steps or (2 if args.tiny else 28)
    runs = args.runs or (3 if args.tiny else 10)
    configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")

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
    settings.DIFFUSERS_DTYPE = "fp32" if args.tiny else "bf16"
    settings.DIFFUSERS_STEPS = steps
    settings.DIFFUSERS_CFG = args.cfg

    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        pipe = build(tiny=args.tiny, device=device, workdir=Path(workdir))
        backend = DiffusersBackend(pipe=pipe)
        build_s = time.perf_counter() - started

    gpu = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"{'tiny SDXL (random weights)' if args.tiny else 'SDXL (random weights)'} on {gpu}; "
          f"torch {torch.__version__}, diffusers {diffusers.__version__}; {backend.dtype_name}, {steps} steps, "
          f"CFG {args.cfg}, {backend.scheduler_name}; built in {build_s:.0f} s")
    print(f"p50/p90 of {runs} images per size after one warm-up image; img/min = 60 / p50; "
          "first = the warm-up image (with torch.compile: the compile)")
    print(f"{'config':<14} {'size':<10} {'p50 s':>7} {'p90 s':>7} {'img/min':>8} {'first s':>8} {'peak GiB':>9}")
    for name in configs:
        configure(backend, compile_mode=args.compile_mode, **CONFIGS[name])
        for size, (width, height) in SIZES.items():
            reset_peak(torch, device)
            first, times = time_images(backend, width=width, height=height, runs=runs)
            print(f"{name:<14} {size:<10} {percentile(times, 50):>7.3f} {percentile(times, 90):>7.3f} "
                  f"{60 / percentile(times, 50):>8.1f} {first:>8.1f} {peak_gib(torch, device):>9}", flush=True)

    configure(backend, compile_mode=args.compile_mode)
    width, height = SIZES["portrait"]
    print(f"\nbatches at {width}x{height} (sdpa): one pipeline call for the batch, every image WEBP-encoded")
    print(f"{'batch':>5} {'p50 s/batch':>12} {'s/image':>8} {'img/min':>8} {'peak GiB':>9}")
    for batch in [int(b) for b in args.batches.split(",") if b.strip()]:
        reset_peak(torch, device)
        time_batch(backend, batch=batch, width=width, height=height)  # warm-up
        times = [time_batch(backend, batch=batch, width=width, height=height) for _ in range(max(1, runs // batch))]
        p50 = percentile(times, 50)
        print(f"{batch:>5} {p50:>12.3f} {p50 / batch:>8.3f} {60 * batch / p50:>8.1f} {peak_gib(torch, device):>9}",
              flush=True)


def build(*, tiny: bool, device: str, workdir: Path):
    """The pipeline, created directly on `device`: initialising 3.5 billion random weights on the
    GPU takes seconds where the CPU takes minutes."""
    import torch

    from tests import sdxl_tiny

    if tiny:
        return sdxl_tiny.build_tiny_pipeline(workdir)
    with torch.device(device):
        return sdxl_tiny.build_pipeline(unet=FULL_UNET, vae=FULL_VAE, text_encoder=FULL_TEXT_ENCODER,
                                        text_encoder_2=FULL_TEXT_ENCODER_2, workdir=workdir)


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


def time_images(backend, *, width: int, height: int, runs: int) -> tuple[float, list[float]]:
    from generation.backends.base import ImageRequest

    def one(seed):
        request = ImageRequest(prompt=PROMPT, negative_prompt=NEGATIVE, width=width, height=height, allow_nsfw=True,
                               seed=seed)
        started = time.perf_counter()
        backend.generate(request, deadline=float("inf"))
        return time.perf_counter() - started

    first = one(0)
    return first, [one(seed) for seed in range(1, runs + 1)]


def time_batch(backend, *, batch: int, width: int, height: int) -> float:
    """`batch` images from one pipeline call, as DIFFUSERS_MAX_BATCH would run them."""
    import torch

    from generation.backends import sdxl_prompts
    from generation.images import encode_webp

    started = time.perf_counter()
    embeds = sdxl_prompts.encode(backend.pipe, PROMPT, NEGATIVE)
    result = backend.pipe(**embeds.pipeline_kwargs(), num_images_per_prompt=batch, width=width, height=height,
                          num_inference_steps=backend.steps, guidance_scale=backend.cfg,
                          generator=torch.Generator(backend.device).manual_seed(0), output_type="pil")
    for image in result.images:
        encode_webp(image)
    return time.perf_counter() - started


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def reset_peak(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(torch, device: str) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if device == "cuda" else "-"


if __name__ == "__main__":
    main()
