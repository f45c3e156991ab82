"""The content policy: no sexual content involving minors, whatever the flags say.

A text violates the policy when it holds a term for a minor and a sexual or nude term (the lists
are data: data/content_policy.txt), or an age under 18 with a sexual term. It runs on every prompt
before anything is charged (the user's prompt, enhanced or not, on every endpoint), and again on
the prompt the enhancer produced, before it reaches a backend.

Matching is done on words, after undoing the usual disguises: NFKC (full-width letters),
lower case, invisible characters removed, Cyrillic and Greek look-alikes and leetspeak digits
mapped to Latin letters, letters spelt out one by one joined ("l.o.l.i"), and repeated letters
collapsed ("loooli"). It reads words, not meaning: "no children" still names children, so a
prompt that excludes minors should do it in the negative prompt.
"""

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from config.errors import ApiError

from ..models import ContentPolicyRefusal

log = logging.getLogger(__name__)

DATA_FILE = Path(__file__).parent / "data" / "content_policy.txt"

REFUSAL_MESSAGE = "Prompt violates the content policy"
REFUSAL_CODE = "CONTENT_POLICY_VIOLATION"

# Latin look-alikes that NFKC leaves alone (Cyrillic and Greek letters).
CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s",
    "ԁ": "d", "ɡ": "g", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
})
# Leetspeak: "1" stands for both "l" and "i", so both readings are checked.
LEET_AS_L = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "|": "l",
                           "!": "i", "+": "t"})
LEET_AS_I = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "|": "l",
                           "!": "i", "+": "t"})

KANA_OR_HAN = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
CJK_CHAR = re.compile(f"[{KANA_OR_HAN}]")
# Separators between two CJK characters ("ロ リ", "萝-莉") are dropped: CJK has no spaces.
CJK_GAP = re.compile(f"(?<=[{KANA_OR_HAN}])[\\W_]+(?=[{KANA_OR_HAN}])")
NOT_ALNUM = re.compile(r"[\W_]+")
SPELT_OUT = re.compile(r"(?<![a-z])(?:[a-z] ){2,}[a-z](?![a-z])")
# A word cut into short pieces by punctuation ("lo-li", "lo.li", "sh.o.ta"): the pieces are joined.
# Spaces do not count ("cowboy shot, a ..." must stay two words).
SPLIT_WORD = re.compile(r"(?<![a-z])[a-z]{1,3}(?:[-._*~'`|/\\+·•]+[a-z]{1,3})+(?![a-z])")
SPLIT_MARKS = re.compile(r"[-._*~'`|/\\+·•]+")
REPEATED = re.compile(r"([a-z])\1+")
# English endings a term may carry ("kids", "underaged", "sexually"); not "-ing" ("kidding").
SUFFIXES = r"(?:s|es|d|ed|ly|y)?"  # "ly" is "y" once double letters are collapsed
# Hiragana folded to katakana, so a list needs one spelling (ろり is ロリ, えろ is エロ).
HIRAGANA_TO_KATAKANA = {code: code + 0x60 for code in range(0x3041, 0x3097)}

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
                "sixteen": 16, "seventeen": 17}
# "12 yo", "twelve-year-old", "aged 9", "12歳". Not "age 2" ("Dragon Age 2"), and digits
# before the number keep "1000歳" a thousand.
AGE = re.compile(
    r"(?:(?<!\d)\b(?P<n1>\d{1,2}|" + "|".join(NUMBER_WORDS)
    + r")[\s-]*(?:yo|y/o|y\.o\.?|yrs?[\s-]*old|years?[\s-]*old|years?[\s-]*of[\s-]*age)\b"
    r"|\baged[\s:]*(?P<n2>\d{1,2})\b"
    r"|(?<!\d)(?P<n3>\d{1,2})\s*(?:歳|才|岁|歲))"
)
# School grades of children: "5th grader", "first-grader".
GRADER = re.compile(r"\b(?:[1-8](?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth)[\s-]*graders?\b")


@dataclass(frozen=True)
class Verdict:
    minor_term: str = ""  # the first term found, as the list writes it (for the refusal record)
    sexual_term: str = ""

    @property
    def violates(self) -> bool:
        return bool(self.minor_term and self.sexual_term)


class ContentPolicyViolation(ApiError):
    """400 CONTENT_POLICY_VIOLATION, whatever the flags; never retryable."""

    def __init__(self, verdict: Verdict):
        super().__init__(status_code=400, code=REFUSAL_CODE, message=REFUSAL_MESSAGE)
        self.verdict = verdict


@lru_cache(maxsize=4096)
def check(text: str) -> Verdict:
    """Which minor and sexual terms the text holds (the first of each; "" when none). Cached: one
    request checks its prompt at the door and again beside the enhancer's output."""
    rules = _rules()
    plain = _plain(text, rules.allowed)
    minor = _find(plain, rules.minor) or _age_under_18(plain) or _grader(plain)
    sexual = _find(plain, rules.sexual)
    return Verdict(minor_term=minor, sexual_term=sexual)


def reload_rules() -> None:
    """Read DATA_FILE again on the next check (and forget the verdicts of the old lists)."""
    _rules.cache_clear()
    check.cache_clear()


def enforce(text: str) -> Verdict:
    """ContentPolicyViolation when `text` breaks the policy; else what it found."""
    verdict = check(text)
    if verdict.violates:
        raise ContentPolicyViolation(verdict)
    return verdict


def enforce_and_record(text: str, *, user, api_key, endpoint: str) -> Verdict:
    """enforce(), and a refusal is recorded for the admins before it is raised."""
    try:
        return enforce(text)
    except ContentPolicyViolation as exc:
        record_refusal(text, verdict=exc.verdict, user=user, api_key=api_key, endpoint=endpoint)
        raise


def record_refusal(text: str, *, verdict: Verdict, user, api_key, endpoint: str) -> None:
    log.warning("content policy refused a prompt of user %s at %s (%s + %s)", getattr(user, "pk", None), endpoint,
                verdict.minor_term, verdict.sexual_term)
    ContentPolicyRefusal.objects.create(
        user=user, api_key=api_key, endpoint=endpoint[:40], minor_term=verdict.minor_term[:100],
        sexual_term=verdict.sexual_term[:100], prompt_sha256=hashlib.sha256(text.encode()).hexdigest(),
        prompt_length=len(text),
    )


def checked_enhancement(*, prompt: str, enhanced: str) -> str:
    """What the enhancer made of `prompt`, less any tag that would pair with the prompt into a
    violation; ContentPolicyViolation if the result still breaks the policy."""
    result = drop_crossing_tags(prompt=prompt, enhanced=enhanced)
    enforce(result)
    return result


def allow_nsfw_for(verdict: Verdict, allow_nsfw: bool) -> bool:
    """A prompt that names a minor is generated as allowNSFW: false, whatever the request says:
    nudity can come from words no list holds ("bath") or from a negative prompt ("clothes"), and
    the safe path (safe rating, NSFW negative prompt, image check) answers both."""
    return allow_nsfw and not verdict.minor_term


def drop_crossing_tags(*, prompt: str, enhanced: str) -> str:
    """The enhancer's tags, less any that would pair with the user's prompt into a violation: no
    sexual tag is added to a prompt that names a minor, and no minor tag to a sexual prompt."""
    asked = check(prompt)
    if not (asked.minor_term or asked.sexual_term):
        return enhanced
    kept = []
    for tag in enhanced.split(","):
        found = check(tag)
        if (asked.minor_term and found.sexual_term) or (asked.sexual_term and found.minor_term):
            continue
        kept.append(tag.strip())
    return ", ".join(tag for tag in kept if tag)


def without_sexual_terms(prompt: str) -> str:
    """A prompt sent as written (enhance: false) with allowNSFW: false: its sexual terms taken
    out and the safe rating added, as the enhancer does for an enhanced one."""
    rules = _rules()
    cleaned = rules.sexual_in_raw_text.sub(" ", prompt)
    parts = [re.sub(r"\s+", " ", part).strip() for part in cleaned.split(",")]
    return ", ".join([*(part for part in parts if part), "safe"])


@dataclass(frozen=True)
class _Terms:
    latin: tuple[re.Pattern, re.Pattern, re.Pattern]  # over the plain text and its two leet readings
    cjk: tuple[tuple[str, str], ...]  # (normalised, as written)
    written: dict  # normalised latin term -> as written


@dataclass(frozen=True)
class _Rules:
    minor: _Terms
    sexual: _Terms
    allowed: tuple[re.Pattern, ...]
    sexual_in_raw_text: re.Pattern


@lru_cache(maxsize=1)
def _rules() -> _Rules:
    sections = _read(DATA_FILE)
    allowed = tuple(_allowed_pattern(term) for term in sections["allowed"])
    sexual_words = [re.escape(term).replace(r"\ ", r"[\s_-]+") for term in sections["sexual"] if not CJK_CHAR.search(term)]
    sexual_cjk = [re.escape(term) for term in sections["sexual"] if CJK_CHAR.search(term)]
    raw = re.compile(r"(?i)(?<![^\W\d_])(?:" + "|".join(sexual_words) + r")" + SUFFIXES + r"(?![^\W\d_])"
                     + ("|" + "|".join(sexual_cjk) if sexual_cjk else ""))
    return _Rules(minor=_terms(sections["minor"]), sexual=_terms(sections["sexual"]), allowed=allowed,
                  sexual_in_raw_text=raw)


def _read(path: Path) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {"minor": [], "sexual": [], "allowed": []}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            if current not in sections:
                raise ValueError(f"{path.name}: unknown section [{current}]")
            continue
        if current is None:
            raise ValueError(f"{path.name}: a term before any section: {line!r}")
        sections[current].append(line)
    return sections


def _terms(terms: list[str]) -> _Terms:
    latin = [t for t in terms if not CJK_CHAR.search(t)]
    cjk = [t for t in terms if CJK_CHAR.search(t)]
    patterns = []
    written = {}
    for leet in (None, LEET_AS_L, LEET_AS_I):
        normalised = sorted({_latin_form(t, leet) for t in latin}, key=len, reverse=True)
        for term in latin:
            written.setdefault(_latin_form(term, leet), term)
        alternatives = "|".join(re.escape(t).replace(r"\ ", " ") for t in normalised if t)
        patterns.append(re.compile(rf"(?<![a-z])(?:{alternatives}){SUFFIXES}(?![a-z])"))
    return _Terms(latin=tuple(patterns), cjk=tuple((_cjk_form(t), t) for t in cjk), written=written)


def _allowed_pattern(phrase: str) -> re.Pattern:
    if CJK_CHAR.search(phrase):
        return re.compile(re.escape(_cjk_form(phrase)))
    return re.compile(rf"(?<![a-z]){re.escape(_latin_form(phrase, None))}(?![a-z])")


@lru_cache(maxsize=1)
def _invisible() -> re.Pattern:
    """Unicode's format characters (category Cf): zero-width spaces and joiners, soft hyphens,
    direction marks, tag characters. Built on first use: scanning every code point takes a
    tenth of a second that no process should pay at import."""
    return re.compile("[" + "".join(
        re.escape(chr(code)) for code in range(0x110000) if unicodedata.category(chr(code)) == "Cf") + "]")


def _base(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    # Invisible characters (zero-width spaces and joiners, soft hyphens) hide nothing.
    return _invisible().sub("", text).lower().translate(CONFUSABLES)


def _cjk_form(text: str) -> str:
    return CJK_GAP.sub("", _base(text)).translate(HIRAGANA_TO_KATAKANA)


def _latin_form(text: str, leet) -> str:
    # Accents off the Latin letters ("nüde" is "nude"); CJK never reaches these lists.
    text = "".join(ch for ch in unicodedata.normalize("NFKD", _base(text)) if not unicodedata.combining(ch))
    if leet is not None:
        text = text.translate(leet)
    text = SPLIT_WORD.sub(lambda m: SPLIT_MARKS.sub("", m.group(0)), text)
    text = NOT_ALNUM.sub(" ", text)
    text = SPELT_OUT.sub(lambda m: m.group(0).replace(" ", ""), text)
    return REPEATED.sub(r"\1", text).strip()


@dataclass(frozen=True)
class _Plain:
    cjk: str
    latin: tuple[str, str, str]
    words: str  # for the age rule: lower case, digits kept


def _plain(text: str, allowed) -> _Plain:
    cjk = _cjk_form(text)
    latin = [_latin_form(text, leet) for leet in (None, LEET_AS_L, LEET_AS_I)]
    for pattern in allowed:
        cjk = pattern.sub(" ", cjk)
        latin = [pattern.sub(" ", form) for form in latin]
    return _Plain(cjk=cjk, latin=tuple(latin), words=_base(text))


def _find(plain: _Plain, terms: _Terms) -> str:
    for form, pattern in zip(plain.latin, terms.latin, strict=True):
        match = pattern.search(form)
        if match:
            word = match.group(0)
            return terms.written.get(word) or terms.written.get(re.sub(SUFFIXES + "$", "", word), word)
    for normalised, written in terms.cjk:
        if normalised in plain.cjk:
            return written
    return ""


def _grader(plain: _Plain) -> str:
    match = GRADER.search(plain.words)
    return match.group(0) if match else ""


def _age_under_18(plain: _Plain) -> str:
    for match in AGE.finditer(plain.words):
        value = next(group for group in match.groups() if group)
        age = NUMBER_WORDS.get(value) or int(value)
        if age < 18:
            return match.group(0).strip()
    return ""
