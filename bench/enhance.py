"""Offline prompt enhancement: milliseconds per prompt, and the memory the vocabulary takes.

    .venv/bin/python bench/enhance.py [--runs 50]

Prompts are the labelled ones in tests/data/ (English, Japanese and Chinese, tagged input) and a
1000-character one, the longest the API accepts. Goals: p99 under 2 ms, vocabulary under 50 MB.
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings

from generation.enhance import enhance_prompt
from generation.enhance.text import has_cjk
from generation.enhance.vocabulary import Vocabulary, get_vocabulary

LONG_PROMPT = ("a girl with long silver hair and purple eyes in a white dress, standing in a field of flowers "
               "at sunset, holding a parasol, wind, petals, ") * 8


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def prompt_groups() -> dict[str, list[str]]:
    prompts = [json.loads(line)["prompt"] for path in sorted((ROOT / "tests" / "data").glob("enhance-*.jsonl"))
               for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {
        "english": [p for p in prompts if not has_cjk(p) and "_" not in p],
        "japanese/chinese": [p for p in prompts if has_cjk(p)],
        "tagged": [p for p in prompts if "_" in p],
        "1000 characters": [LONG_PROMPT[:1000]],
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50, help="calls per prompt")
    args = parser.parse_args()
    settings.ENHANCE_LLM_URL = ""

    gc.collect()
    rss_before = rss_mb()
    started = time.perf_counter()
    get_vocabulary()
    load_s = time.perf_counter() - started
    gc.collect()
    rss_grew = rss_mb() - rss_before
    # A second, throwaway copy under tracemalloc: what the structures hold, without the tracer's
    # own overhead in the RSS figure above.
    tracemalloc.start()
    copy = Vocabulary()
    gc.collect()
    held_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    del copy

    print(f"vocabulary: loaded in {load_s:.2f} s; holds {held_mb:.1f} MB (tracemalloc), "
          f"RSS grew {rss_grew:.1f} MB; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    # Wall time counts whatever else the machine runs; thread CPU time is this code's own cost.
    print(f"{'prompts':<18} {'n':>4} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'cpu p50':>8} {'cpu p99':>8}")
    every_wall, every_cpu = [], []
    for name, prompts in prompt_groups().items():
        wall, cpu = [], []
        for prompt in prompts:
            enhance_prompt(prompt, allow_nsfw=False)
            for _ in range(args.runs):
                started_cpu, started = time.thread_time(), time.perf_counter()
                enhance_prompt(prompt, allow_nsfw=False)
                wall.append((time.perf_counter() - started) * 1000)
                cpu.append((time.thread_time() - started_cpu) * 1000)
        every_wall += wall
        every_cpu += cpu
        print_row(name, len(prompts), wall, cpu)
    print_row("all", "", every_wall, every_cpu)


def print_row(name, prompts, wall, cpu):
    print(f"{name:<18} {prompts:>4} {len(wall):>6} {statistics.median(wall):>8.3f} {percentile(wall, 0.99):>8.3f} "
          f"{max(wall):>8.3f} {statistics.median(cpu):>8.3f} {percentile(cpu, 0.99):>8.3f}")

if __name__ == "__main__":
    main()
