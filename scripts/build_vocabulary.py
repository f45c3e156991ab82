"""Derive the enhancer's shipped vocabulary from the Danbooru tag export.

    .venv/bin/python scripts/build_vocabulary.py [--source ../shared/data/danbooru-tags.csv]

Reads the export (tag, category, post count, aliases; category 0 general, 1 artist, 3 copyright,
4 character, 5 meta) and writes generation/enhance/data/vocabulary.tsv.gz, which is committed: the
project never reads the export at run time. Kept: every general and meta tag, and the characters,
series and artists that have enough posts for a model to have learnt them. Each line is
    tag <TAB> category <TAB> post count <TAB> aliases (comma-separated) <TAB> series
where series is filled for characters whose qualifier names a kept copyright ("rem_(re:zero)" ->
"re:zero_kara_hajimeru_isekai_seikatsu"). Lines are ordered by post count, most used first, so the
output is byte-for-byte reproducible.
"""

import argparse
import csv
import gzip
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "danbooru-tags.csv"
DEFAULT_OUTPUT = REPO_ROOT / "generation" / "enhance" / "data" / "vocabulary.tsv.gz"

GENERAL, ARTIST, COPYRIGHT, CHARACTER, META = 0, 1, 3, 4, 5
# Minimum post counts per category. Below these a checkpoint has seen too few images for the tag
# to steer it, and the vocabulary would grow past what a web process should hold.
MIN_POSTS = {GENERAL: 0, META: 0, COPYRIGHT: 100, CHARACTER: 200, ARTIST: 500}

QUALIFIER = re.compile(r"_\(([^()]+)\)$")


def read_rows(source: Path):
    with source.open(encoding="utf-8", newline="") as handle:
        for name, category, post_count, aliases in csv.reader(handle):
            yield name, int(category), int(post_count), aliases


def qualifiers(name: str) -> list[str]:
    """The parenthesised qualifiers of a tag, innermost last: "a_(b)_(fate)" -> ["fate", "b"]."""
    found = []
    while match := QUALIFIER.search(name):
        found.append(match.group(1))
        name = name[: match.start()]
    return found


def build(source: Path) -> list[str]:
    rows = [row for row in read_rows(source) if row[1] in MIN_POSTS and row[2] >= MIN_POSTS[row[1]]]
    copyrights = {name for name, category, _, _ in rows if category == COPYRIGHT}
    copyright_alias = {}
    for name, category, _, aliases in rows:
        if category == COPYRIGHT:
            for alias in aliases.split(","):
                copyright_alias.setdefault(alias, name)

    def series_of(character: str) -> str:
        for qualifier in qualifiers(character):
            for candidate in (qualifier, f"{qualifier}_(series)"):
                if candidate in copyrights:
                    return candidate
            if qualifier in copyright_alias:
                return copyright_alias[qualifier]
        return ""

    rows.sort(key=lambda row: (-row[2], row[0]))
    lines = []
    for name, category, post_count, aliases in rows:
        # "/lh"-style aliases are Danbooru search shorthands, never words anyone writes in a prompt.
        kept_aliases = sorted({a for a in aliases.split(",") if a and not a.startswith("/") and "\t" not in a})
        series = series_of(name) if category == CHARACTER else ""
        lines.append(f"{name}\t{category}\t{post_count}\t{','.join(kept_aliases)}\t{series}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if not args.source.exists():
        sys.exit(f"{args.source} not found; pass --source PATH/danbooru-tags.csv")
    lines = build(args.source)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip header, and so the committed file, identical across rebuilds.
    with open(args.output, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed:
        packed.write(("\n".join(lines) + "\n").encode("utf-8"))
    print(f"{len(lines)} tags -> {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
