"""Words and their stems: the one tokenizer used for prompts, tag names, aliases and phrase tables.

Matching happens on stems so that "running", "runs" and "ran" all reach the tag `running`, and
"blue eye" reaches `blue_eyes`. The stemmer is deliberately crude; it only has to map the same
word to the same key on both sides, and exact surface matches are tried before stems.
"""

import re
import unicodedata
from functools import lru_cache

# Split on everything that is not a letter or digit, keeping in-word "+" ("6+girls") and "." in
# abbreviations ("d.va", "c.c.") out of the picture: tag names are indexed the same way.
WORD = re.compile(r"[^\W_]+", re.UNICODE)
POSSESSIVE = re.compile(r"'s\b")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")

IRREGULAR = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "geese": "goose", "leaves": "leaf", "wolves": "wolf",
    "knives": "knife", "shelves": "shelf", "lives": "life", "wives": "wife", "halves": "half",
    "thieves": "thief", "elves": "elf", "dwarves": "dwarf", "scarves": "scarf", "hooves": "hoof",
    "calves": "calf", "loaves": "loaf", "fishes": "fish", "oxen": "ox", "cacti": "cactus",
    "ran": "run", "sat": "sit", "stood": "stand", "held": "hold", "wore": "wear", "worn": "wear",
    "flew": "fly", "flown": "fly", "ate": "eat", "eaten": "eat", "drank": "drink", "drunk": "drink",
    "fell": "fall", "fallen": "fall", "lay": "lie", "lain": "lie", "lying": "lie", "laying": "lie",
    "rode": "ride", "ridden": "ride", "swam": "swim", "sang": "sing", "sung": "sing", "wrote": "write",
    "written": "write", "drew": "draw", "drawn": "draw", "broke": "break", "broken": "break",
    "took": "take", "taken": "take", "slept": "sleep", "wept": "weep", "fought": "fight",
    "caught": "catch", "bought": "buy", "brought": "bring", "thought": "think", "knelt": "kneel",
    "kneeled": "kneel", "hid": "hide", "hidden": "hide", "bit": "bite", "bitten": "bite",
    "shot": "shoot", "threw": "throw", "thrown": "throw", "blew": "blow", "blown": "blow",
    "froze": "freeze", "frozen": "freeze", "dying": "die", "tying": "tie", "burnt": "burn",
    "lit": "light", "spun": "spin", "hung": "hang", "clung": "cling", "dug": "dig", "led": "lead",
    "met": "meet", "read": "read", "said": "say", "saw": "see", "seen": "see", "went": "go",
    "gone": "go", "came": "come", "gave": "give", "given": "give", "got": "get", "made": "make",
    "left": "left", "felt": "feel", "kept": "keep", "crept": "creep", "swept": "sweep",
}

VOWELS = frozenset("aeiouy")
# Words ending in "s" that are not plurals ("bikinis" and "skis" are).
SINGULARS_IN_S = frozenset(
    """this his iris tennis penis paris lapis pelvis mantis cannabis trellis metropolis ibis epidermis
    clitoris testis amaryllis chaos bias canvas atlas gas yes was has does series species news lens
    pants shorts jeans glasses scissors trousers tights overalls pajamas""".split()
)


def normalize(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII), lower case, curly quotes straightened."""
    text = unicodedata.normalize("NFKC", text)
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


def has_cjk(text: str) -> bool:
    return CJK.search(text) is not None


def words(text: str) -> list[str]:
    """The words of a text; a possessive "'s" is dropped ("girl's" -> "girl")."""
    if "'" in text:
        text = POSSESSIVE.sub("", text)
    return WORD.findall(text)


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    if word in IRREGULAR:
        word = IRREGULAR[word]
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "shes", "ches", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "sis", "xis")) and word not in SINGULARS_IN_S:
        word = word[:-1]
    for suffix in ("ing", "ed"):
        base = word[: -len(suffix)]
        # "wing", "string" and "red" keep their endings: what would remain has no vowel.
        if word.endswith(suffix) and len(base) >= 3 and VOWELS.intersection(base[:-1] or base):
            word = base
            if word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> run, sitting -> sit; falling keeps its "ll"
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def key(tokens) -> str:
    return " ".join(tokens)


def stem_key(text: str) -> str:
    """The stem key of a tag name, alias or phrase: "blue_eyes" -> "blue eye"."""
    return key(stem(w) for w in words(text.replace("_", " ")))
