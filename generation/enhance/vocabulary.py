"""The shipped vocabulary and the indexes the enhancer matches prompts against.

Built once per process, on first use (never at Django start-up), behind a lock; afterwards every
structure is read-only, so any number of threads can share it.
"""

import gzip
import threading
from dataclasses import dataclass
from pathlib import Path

from . import lexicon, ratings
from .text import IRREGULAR, key, normalize, stem, stem_key, words

DATA_DIR = Path(__file__).resolve().parent / "data"

GENERAL, ARTIST, COPYRIGHT, CHARACTER, META = 0, 1, 3, 4, 5
# Meta tags are mostly about the upload ("translated", "md5_mismatch"); only these and the
# "(medium)" ones describe a look someone can ask for.
DESCRIPTIVE_META = frozenset("traditional_media anime_screenshot game_cg concept_art official_art".split())
# General tags whose qualifier only says what kind of thing it is ("slime_(creature)",
# "earth_(planet)") are also found by their bare name; others ("pink_(e.g.o)", "x_(cosplay)") not.
KIND_QUALIFIERS = frozenset(
    """object food flower weapon armor symbol animal sword medium instrument creature planet fruit fish
    bird plant insect vehicle drink place sky substance shape sport clothing weather vegetable gemstone
    mammal projectile action""".split()
)
# A phrase longer than this has no tag (the longest useful names are about five words).
MAX_PHRASE_WORDS = 6
# A series with this many posts is known by its name alone ("pokemon", "touhou").
WELL_KNOWN_SERIES_POSTS = 5000


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    category: int
    post_count: int


@dataclass(frozen=True, slots=True)
class Character:
    tag: str
    series: str  # a copyright tag, or "" when unknown
    gender: str  # "f", "m", "o" (a person of unstated gender) or "c" (a creature, not a person)


@dataclass(frozen=True, slots=True)
class Relation:
    requires: tuple[str, ...]
    adds: tuple[str, ...]


def strip_qualifier(name: str) -> str:
    """"rem_(re:zero)" -> "rem"; names without a trailing "(...)" come back unchanged."""
    if name.endswith(")") and "_(" in name:
        return name[: name.rindex("_(")]
    return name


def normalize_tag(text: str) -> str:
    """A tag as someone typed it -> Danbooru spelling: "Blue Hair" -> "blue_hair", "\\(" -> "("."""
    text = normalize(text).strip().replace("\\(", "(").replace("\\)", ")")
    return "_".join(text.split())


def _data_lines(name: str):
    with open(DATA_DIR / name, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


class Vocabulary:
    """Every tag we ship, its aliases, and the phrase indexes built over them and the hand tables."""

    def __init__(self):
        self.tags: dict[str, Tag] = {}
        self.aliases: dict[str, str] = {}
        self.character_series: dict[str, str] = {}
        with gzip.open(DATA_DIR / "vocabulary.tsv.gz", "rt", encoding="utf-8") as rows:
            for line in rows:
                name, category, post_count, aliases, series = line.rstrip("\n").split("\t")
                self.tags[name] = Tag(name, int(category), int(post_count))
                for alias in aliases.split(",") if aliases else ():
                    self.aliases.setdefault(alias, name)
                if series:
                    self.character_series[name] = series
        self.explicit = frozenset(name for name in self.tags if ratings.is_explicit(name))
        self._load_characters()
        self._index_general()
        self._index_names()
        self.phrases, self.phrase_stems = self._load_phrases()
        self.relations = self._load_relations("related.txt")
        self.enrichments = self._load_relations("enrich.txt")
        self.cjk = dict(line.split(" = ", 1) for line in _data_lines("cjk.txt"))
        self.english_words = self._english_words()
        self.key_prefixes = self._key_prefixes()
        self.name_first_words = frozenset(name.split(" ", 1)[0] for name in self.names)

    # Tags -------------------------------------------------------------------------------------

    def resolve(self, text: str) -> str | None:
        """The canonical tag for a tag name or alias in any spelling, or None."""
        name = normalize_tag(text)
        if name in self.tags:
            return name
        return self.aliases.get(name)

    def category(self, tag: str) -> int:
        return self.tags[tag].category

    def is_descriptive(self, tag: str) -> bool:
        """A general tag, or a meta tag that describes the look ("watercolor_(medium)")."""
        category = self.tags[tag].category
        return category == GENERAL or (category == META and (tag.endswith("_(medium)") or tag in DESCRIPTIVE_META))

    def character(self, tag: str) -> Character:
        series, gender = self.character_facts.get(tag, ("", ""))
        series = series or self.character_series.get(tag, "")
        gender = gender or self.series_gender.get(self.character_series.get(tag, ""), "o")
        return Character(tag, series, gender)

    def search(self, query: str, *, limit: int) -> list[Tag]:
        """Autocomplete: tags whose name, a word of the name, or an alias starts with the query,
        most used first. Tags are stored in post-count order, so the first hits are the best."""
        prefix = normalize_tag(query)
        if not prefix:
            return []
        inner = "_" + prefix
        found: dict[str, None] = {}
        for name in self.tags:
            if name.startswith(prefix) or inner in name:
                found[name] = None
                if len(found) >= limit:
                    break
        if len(found) < limit:
            by_alias = {self.aliases[a] for a in self.aliases if a.startswith(prefix)} - found.keys()
            for name in sorted(by_alias, key=lambda n: (-self.tags[n].post_count, n)):
                found[name] = None
        ranked = sorted(found, key=lambda n: (-self.tags[n].post_count, n))
        return [self.tags[name] for name in ranked[:limit]]

    # Phrase lookups ---------------------------------------------------------------------------

    def phrase(self, surface: str, stems: str) -> tuple[str, ...] | None:
        found = self.phrases.get(surface)
        return found if found is not None else self.phrase_stems.get(stems)

    def general(self, surface: str, stems: str) -> str | None:
        return self.general_surface.get(surface) or self.general_stems.get(stems)

    def general_spelling(self, stems: str) -> str | None:
        """The words a general stem key was made from, where they differ from the stems."""
        return self._general_spellings.get(stems)

    def phrase_spelling(self, stems: str) -> str | None:
        return self._phrase_spellings.get(stems)

    def general_exact(self, surface: str) -> str | None:
        return self.general_surface.get(surface)

    def general_stem(self, stems: str) -> str | None:
        return self.general_stems.get(stems)

    def reach(self, surfaces: list[str], stems: list[str]) -> int:
        """How many of these words a key could span: "long silver hair" stops at 2 when no key
        starts with "long silver". Keeps matching at about one lookup per word."""
        surface = stem_text = ""
        for count in range(1, min(len(surfaces), MAX_PHRASE_WORDS)):
            surface = f"{surface} {surfaces[count - 1]}" if surface else surfaces[0]
            stem_text = f"{stem_text} {stems[count - 1]}" if stem_text else stems[0]
            if surface not in self.key_prefixes and stem_text not in self.key_prefixes:
                return count
        return min(len(surfaces), MAX_PHRASE_WORDS)

    def names_for(self, surface: str) -> tuple[str, ...]:
        return self.names.get(surface, ())

    def is_hand_named(self, surface: str, tag: str) -> bool:
        return (surface, tag) in self.hand_names

    def is_well_known(self, surface: str, tag: str) -> bool:
        """Named in data/characters.txt, or a big series: safe to match even in lower case."""
        if self.tags[tag].category == COPYRIGHT:
            return self.tags[tag].post_count >= WELL_KNOWN_SERIES_POSTS
        return self.is_hand_named(surface, tag) or tag in self.character_facts

    # Loading ----------------------------------------------------------------------------------

    def _load_characters(self):
        """data/characters.txt: series, gender and short names the export does not carry."""
        self.character_facts: dict[str, tuple[str, str]] = {}
        self.series_gender: dict[str, str] = {}
        self.hand_name_list: list[tuple[str, str]] = []
        series, default_gender = "", "o"
        for line in _data_lines("characters.txt"):
            if line.startswith("@"):
                _, series, default_gender = line.split()
                series = "" if series == "-" else series
                if series:
                    self.series_gender[series] = default_gender
            elif line.startswith("="):
                *name_words, tag = line[1:].split()
                self.hand_name_list.append((" ".join(name_words), tag))
            else:
                for entry in line.split():
                    tag, _, gender = entry.rpartition(":") if entry[-2:-1] == ":" else (entry, "", "")
                    self.character_facts[tag] = (series, gender or default_gender)

    def _general_tags(self):
        return (name for name in self.tags if self.is_descriptive(name))

    def _aliases_of(self):
        by_tag: dict[str, list[str]] = {}
        for alias, tag in self.aliases.items():
            by_tag.setdefault(tag, []).append(alias)
        return by_tag

    def _index_general(self):
        """Surface and stem keys -> general tag. Names beat aliases, aliases beat names stripped of
        their qualifier ("slime" -> slime_(creature) only if nothing else is called "slime"), and
        within each the tag with more posts wins (tags are stored most used first)."""
        self.general_surface: dict[str, str] = {}
        self.general_stems: dict[str, str] = {}
        self._general_spellings: dict[str, str] = {}  # stem key -> the words it was made from
        aliases_of = self._aliases_of()
        general = list(self._general_tags())
        passes = (
            [(name, name) for name in general],
            [(alias, name) for name in general for alias in aliases_of.get(name, ())],
            [(strip_qualifier(name), name) for name in general
             if strip_qualifier(name) != name and name[len(strip_qualifier(name)) + 2:-1] in KIND_QUALIFIERS],
        )
        for entries in passes:
            for text, tag in entries:
                tokens = words(text.replace("_", " "))
                # "girl_on_top", "boy_sandwich": a subject noun starting a tag reads as a subject.
                if not tokens or (len(tokens) > 1 and stem(tokens[0]) in lexicon.PRIMARY_SUBJECT_STEMS):
                    continue
                if len(tokens) == 1 and len(tokens[0]) < 2:
                    continue
                # "sitting on" (-> sitting_on_person), "shirt holding" (-> shirt_hold): in a sentence
                # these words belong to the next noun or the previous subject, not to one tag.
                if len(tokens) > 1 and (tokens[-1] in lexicon.DANGLING_WORDS
                                        or stem(tokens[-1]) in lexicon.VERB_PREFIXES):
                    continue
                self.general_surface.setdefault(key(tokens), tag)
                stems = key(stem(t) for t in tokens)
                if stems not in self.general_stems:
                    self.general_stems[stems] = tag
                    if stems != key(tokens):
                        self._general_spellings[stems] = key(tokens)

    def _index_names(self):
        """Surface keys -> candidate characters and series, best first: hand-written names, tag
        names, aliases, names without their series qualifier, then either word of a two-word name
        of a character we have facts for ("Reimu" -> hakurei_reimu)."""
        names: dict[str, list[str]] = {}
        self.hand_names = frozenset((name, tag) for name, tag in self.hand_name_list if tag in self.tags)
        aliases_of = self._aliases_of()
        named = [t.name for t in self.tags.values() if t.category in (CHARACTER, COPYRIGHT)]

        def add(text, tag):
            surface = key(words(text.replace("_", " ")))
            if len(surface) > 1:  # "L" of Death Note is a size, a letter, a hand sign before a name
                candidates = names.setdefault(surface, [])
                if tag not in candidates:
                    candidates.append(tag)

        for tag in named:
            add(tag, tag)
        for tag in named:
            for alias in aliases_of.get(tag, ()):
                add(alias, tag)
        for tag in named:
            bare = strip_qualifier(tag)
            if bare != tag and (self.tags[tag].category == COPYRIGHT or self.character(tag).series):
                add(bare, tag)
        for tag in named:
            if tag in self.character_facts and strip_qualifier(tag) == tag:
                parts = tag.split("_")
                if len(parts) == 2:
                    add(f"{parts[1]} {parts[0]}", tag)
                    for part in parts:
                        if len(part) >= 3:
                            add(part, tag)
        by_posts = {surface: sorted(tags, key=lambda t: -self.tags[t].post_count) for surface, tags in names.items()}
        for name, tag in reversed(self.hand_name_list):
            if tag in self.tags:
                surface = key(words(name))
                by_posts[surface] = [tag] + [t for t in by_posts.get(surface, ()) if t != tag]
        self.names = {surface: tuple(tags) for surface, tags in by_posts.items()}

    def _load_phrases(self):
        """data/phrases.txt by exact words, and by stems where no two phrases share a stem key
        ("snowing" and "snow" both stem to "snow": only their exact spellings match)."""
        phrases: dict[str, tuple[str, ...]] = {}
        by_stem: dict[str, tuple[str, ...] | None] = {}
        self._phrase_spellings: dict[str, str] = {}
        for line in _data_lines("phrases.txt"):
            phrase, _, targets = line.partition(" = ")
            tags = tuple(t for t in (t.strip() for t in targets.split(",")) if t in self.tags)
            phrases[key(words(phrase))] = tags
            stems = stem_key(phrase)
            by_stem[stems] = tags if stems not in by_stem or by_stem[stems] == tags else None
            self._phrase_spellings.setdefault(stems, key(words(phrase)))
        return phrases, {stems: tags for stems, tags in by_stem.items() if tags is not None}

    def _load_relations(self, name: str) -> tuple[Relation, ...]:
        """data/related.txt or data/enrich.txt: "A + B => C, D"; tags we do not ship are left out."""
        relations = []
        for line in _data_lines(name):
            requires, _, adds = line.partition(" => ")
            relations.append(Relation(tuple(t.strip() for t in requires.split("+")),
                                      tuple(t for t in (t.strip() for t in adds.split(",")) if t in self.tags)))
        return tuple(relations)

    def _key_prefixes(self) -> frozenset[str]:
        """Every proper prefix of every multi-word key: "hatsune" of "hatsune miku"."""
        prefixes = set()
        for keys in (self.phrases, self.phrase_stems, self.general_surface, self.general_stems, self.names):
            for phrase in keys:
                cut = phrase.rfind(" ")
                while cut > 0:
                    prefixes.add(phrase[:cut])
                    cut = phrase.rfind(" ", 0, cut)
        return frozenset(prefixes)

    def _english_words(self) -> frozenset[str]:
        """Words that are ordinary English as well as a name (data/common_word_names.txt), and the
        words the enhancer itself treats as English."""
        found = {word for line in _data_lines("common_word_names.txt") for word in line.split()}
        found |= set(lexicon.NOT_A_TAG_ALONE) | set(IRREGULAR)
        found.update(lexicon.PRIMARY_SUBJECTS, lexicon.ROLE_SUBJECTS, lexicon.COLOURS)
        return frozenset(found)


_vocabulary: Vocabulary | None = None
_lock = threading.Lock()


def get_vocabulary() -> Vocabulary:
    global _vocabulary
    if _vocabulary is None:
        with _lock:
            if _vocabulary is None:
                _vocabulary = Vocabulary()
    return _vocabulary
