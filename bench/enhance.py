"""Offline prompt enhancement, per language: recall and violations on the labelled sets, time per
prompt, a 1000-character prompt, the load time and the memory of everything loaded.

    .venv/bin/python bench/enhance.py [--runs 20] [--cases tests/data/enhance-heldout.jsonl]

Prompts are the labelled ones in tests/data/ (or --cases), grouped by language (kana: Japanese;
hanzi alone: Chinese). Recall and violations are scored as ../shared/tools/score-enhancer scores
them (aliases folded). Goals (issue 17): recall >= 0.92 overall and >= 0.88 per language, no
violation, p99 <= 3 ms, <= 5 ms for 1000 characters, load <= 2 s, RSS <= 200 MB.
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings

from generation.enhance import enhance_prompt
from generation.enhance.cjk import KANA, get_reader
from generation.enhance.text import has_cjk
from generation.enhance.vocabulary import get_vocabulary

LONG_JAPANESE = "銀色の長い髪と紫の目の女の子、白いワンピース、夕焼けの花畑に立っている、日傘を持っている、風、花びら、" * 20
LONG_CHINESE = "银色长发紫色眼睛的女孩，穿着白色连衣裙，黄昏时站在花田里，拿着阳伞，风，花瓣，" * 20
LONG_PROMPT = ("a girl with long silver hair and purple eyes in a white dress, standing in a field of flowers "
               "at sunset, holding a parasol, wind, petals, ") * 8


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def language(prompt: str) -> str:
    return "japanese" if KANA.search(prompt) else "chinese" if has_cjk(prompt) else "english"


def labelled_cases(paths) -> dict[str, list[dict]]:
    groups = {"english": [], "japanese": [], "chinese": []}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                case = json.loads(line)
                groups[language(case["prompt"])].append(case)
    return groups


def normalise(tag: str, vocabulary) -> str:
    tag = tag.strip().replace("\\(", "(").replace("\\)", ")").replace(" ", "_")
    return vocabulary.resolve(tag) or tag


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="calls per prompt")
    parser.add_argument("--cases", nargs="*", help="labelled JSONL files (default: tests/data/enhance-*.jsonl)")
    args = parser.parse_args()
    settings.ENHANCE_LLM_URL = ""

    gc.collect()
    rss_before = rss_mb()
    started = time.perf_counter()
    vocabulary = get_vocabulary()
    get_reader(vocabulary)  # segmenters, dictionary tables and the name index
    enhance_prompt("少女", allow_nsfw=False)
    load_s = time.perf_counter() - started
    gc.collect()
    print(f"load: {load_s:.2f} s (vocabulary, segmenters, dictionaries); RSS {rss_mb():.0f} MB "
          f"(grew {rss_mb() - rss_before:.0f} MB); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    paths = args.cases or sorted((ROOT / "tests" / "data").glob("enhance-*.jsonl"))
    print(f"{'language':<10} {'cases':>5} {'recall':>7} {'viol.':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    every, hits, musts, violations, cases = [], 0, 0, 0, 0
    for name, group in labelled_cases(paths).items():
        wall, hit, must, violated = [], 0, 0, 0
        for case in group:
            line = enhance_prompt(case["prompt"], allow_nsfw=False).prompt
            got = {normalise(t, vocabulary) for t in line.split(",") if t.strip()}
            hit += sum(normalise(m, vocabulary) in got for m in case["must"])
            must += len(case["must"])
            violated += any(normalise(n, vocabulary) in got for n in case["must_not"])
            for _ in range(args.runs):
                started = time.perf_counter()
                enhance_prompt(case["prompt"], allow_nsfw=False)
                wall.append((time.perf_counter() - started) * 1000)
        every += wall
        hits, musts, violations, cases = hits + hit, musts + must, violations + violated, cases + len(group)
        print_row(name, len(group), hit / max(must, 1), violated, wall)
    print_row("all", cases, hits / max(musts, 1), violations, every)
    for name, prompt in (("en 1000ch", LONG_PROMPT[:1000]), ("ja 1000ch", LONG_JAPANESE[:1000]),
                         ("zh 1000ch", LONG_CHINESE[:1000])):
        wall = []
        for _ in range(args.runs):
            started = time.perf_counter()
            enhance_prompt(prompt, allow_nsfw=False)
            wall.append((time.perf_counter() - started) * 1000)
        print_row(name, 1, None, None, wall)
    print(f"RSS after all: {rss_mb():.0f} MB")


def print_row(name, cases, recall, violations, wall):
    recall_text = f"{recall:>7.3f}" if recall is not None else f"{'':>7}"
    violations_text = f"{violations:>6}" if violations is not None else f"{'':>6}"
    print(f"{name:<10} {cases:>5} {recall_text} {violations_text} {statistics.median(wall):>8.3f} "
          f"{percentile(wall, 0.99):>8.3f} {max(wall):>8.3f}")


if __name__ == "__main__":
    main()
