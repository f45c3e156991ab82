"""bench/gpu.py without a GPU: the full-size configs it builds are SDXL base's own architecture, and
its --tiny run on the CPU writes the table, row by row, skipping what its time budget cannot hold.
No timing is asserted: the numbers are only the bench's to print."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _require(module: str):
    # Under CI the Makefile installs the [gpu] extra: a missing package fails the run, never skips.
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


torch = _require("torch")
_require("diffusers")
_require("transformers")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import gpu  # noqa: E402 (bench/ is scripts, not a package on the path)


def run_bench(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    env.pop("OUT", None)
    return subprocess.run([sys.executable, "bench/gpu.py", "--tiny", "--out", str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_the_full_size_model_has_sdxl_base_parameter_counts(tmp_path):
    """Built on the meta device (no memory): the published sizes of SDXL base 1.0's UNet, VAE and
    two text encoders, so the GPU run times the real architecture."""
    pipe = gpu.build(tiny=False, device="meta", workdir=tmp_path)

    counts = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
              for name in ("unet", "vae", "text_encoder", "text_encoder_2")}

    assert counts == {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                      "text_encoder_2": 694_659_840}
    assert {p.device.type for p in pipe.unet.parameters()} == {"meta"}


def test_a_tiny_run_writes_every_row_with_its_numbers(tmp_path):
    """In bf16, as on the GPU: the backend converts the fp32-built pipeline, as it will there."""
    out = tmp_path / "gpu-bench.md"

    result = run_bench("--dtype", "bf16", "--steps", "1", "--runs", "1", "--variant-runs", "1", "--batches", "2", "--budget", "300",
                       "--rows", "sizes,vae,overhead,batches,fused-qkv", out=out)

    assert result.returncode == 0, result.stderr[-3000:]
    markdown = out.read_text()
    assert "- device: CPU" in markdown and "- versions: Python" in markdown and "- date: " in markdown
    assert "- settings: bf16, 1 steps, CFG 5.0" in markdown
    rows = table_rows(markdown)
    assert [(r[0], r[1], r[2].split()[0], r[3]) for r in rows] == [
        ("s/image", "sdpa", "portrait", "1"), ("s/image", "sdpa", "square", "1"), ("s/image", "sdpa", "landscape", "1"),
        ("VAE decode ms", "sdpa", "portrait", "1"), ("VAE decode ms", "sdpa", "square", "1"),
        ("VAE decode ms", "sdpa", "landscape", "1"), ("overhead ms/step", "sdpa", "portrait", "1"),
        ("s/batch", "sdpa", "portrait", "2"), ("s/image", "fused-qkv", "portrait", "1"),
    ]
    for row in rows:
        assert float(row[4]) > 0 and "failed" not in row[9] and "skipped" not in row[9], row
    raw = json.loads(out.with_suffix(".json").read_text())
    assert [len(row["samples"]) for row in raw["rows"]] == [1] * 9


def test_rows_the_budget_cannot_hold_are_skipped_with_a_note(tmp_path):
    """A budget already spent at start-up: every row is listed, none runs, and the run still
    ends cleanly with its table."""
    out = tmp_path / "gpu-bench.md"

    result = run_bench("--budget", "0", "--rows", "sizes,compile", out=out)

    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(out.read_text())
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("s/image", "sdpa", "portrait 832x1280"), ("s/image", "sdpa", "square 1024x1024"),
        ("s/image", "sdpa", "landscape 1280x832"), ("s/image", "compile (default)", "portrait 832x1280"),
    ]
    assert all(r[9].startswith("skipped: 0 s of the budget left") and r[4] == "" for r in rows), rows
