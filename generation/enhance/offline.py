"""The offline enhancer: a prompt in any mix of English, Japanese, Chinese and Danbooru tags in,
the real tags it asks for out, grouped the way anime checkpoints were trained (count, character,
series, general). Pure functions over the shared read-only vocabulary: deterministic and safe to
call from any thread.
"""

import re
import unicodedata
from dataclasses import dataclass, field

from . import lexicon
from .cjk import gloss
from .senses import disambiguate
from .text import IRREGULAR, has_cjk, stem, words
from .vocabulary import CHARACTER, COPYRIGHT, GENERAL, MAX_PHRASE_WORDS, Relation, Vocabulary, strip_qualifier

RATING_WORDS = frozenset("safe sensitive nsfw explicit questionable general".split())
YEAR_WORDS = frozenset("newest recent mid early old oldest".split())
COUNT_TAG = re.compile(r"^(\d+\+?)(girl|boy|other)s?$|^(solo|no_humans|multiple_(girls|boys|others))$")
SEGMENT_BREAK = re.compile(r"[,;\n|]+|\.(?=\s|$)|[!?]+")
# "(blue_hair:1.2)" -> "blue_hair"; the weight syntax of one UI is not a tag.
WEIGHTED = re.compile(r"\(([^()]+?):\s*[\d.]+\)")
EMPHASIS = re.compile(r"(?<![_\\])[()\[\]{}]")
NEGATION_CONTRACTION = re.compile(r"n't\b")
# "silver-haired", "blue-eyed", "star-shaped": the word a tag uses, or nothing.
WORD_REWRITES = {"haired": "hair", "eyed": "eyes", "winged": "wings", "colored": "", "coloured": "", "shaped": "",
                 "cannot": "not"}
SERIES_CONTEXT_WORDS = frozenset("from as".split())
QUALIFIED = re.compile(r"_\([^()]+\)$")
POSITIONAL = re.compile(r"^([a-z]+)_(?:on|in|under|against|by)_([a-z_]+)$")


@dataclass
class Token:
    text: str
    stem: str
    capitalized: bool
    first: bool
    negated: bool = False
    consumed: bool = False
    in_phrase: bool = False  # part of a match of two or more words
    in_name: bool = False  # part of a character or series name ("Chainsaw Man" names no man)


@dataclass
class Match:
    start: int  # index in the segment's content tokens
    end: int
    tags: list[str]
    words: list[Token] = field(default_factory=list)
    negated: bool = False
    derived: list[str] = field(default_factory=list)


@dataclass
class Analysis:
    counts: list[str] = field(default_factory=list)
    characters: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    general: list[str] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)
    rating: str = ""  # a rating word the prompt itself gave


@dataclass
class Mention:
    gender: str  # "f", "m" or "" (not stated)
    count: int  # 0 for "the girl", "girl" (someone already counted, or the first); lexicon.MANY for "girls"
    primary: bool  # "girl", "man" (not "witch", "knight": roles, see lexicon.ROLE_SUBJECTS)


@dataclass
class People:
    """Who the prompt names, before deciding how many are in the picture."""
    mentions: list[Mention] = field(default_factory=list)
    collectives: list[dict[str, int]] = field(default_factory=list)
    pronoun_gender: str = ""


@dataclass
class Tally:
    female: int = 0
    male: int = 0
    unstated: int = 0

    def get(self, gender: str) -> int:
        return {"f": self.female, "m": self.male}.get(gender, self.unstated)

    def add(self, gender: str, count: int):
        current = self.get(gender)
        total = lexicon.MANY if lexicon.MANY in (current, count) else current + count
        if gender == "f":
            self.female = total
        elif gender == "m":
            self.male = total
        else:
            self.unstated = total


def analyse(prompt: str, vocabulary: Vocabulary) -> Analysis:
    text = prepare(prompt)
    if has_cjk(text):
        text = gloss(text, vocabulary)
    text = disambiguate(text)
    analysis = Analysis()
    general: list[str] = []
    explicit_counts: list[str] = []
    entries: list[str | list[Token]] = []  # a tag written as a tag, or a segment of words
    # A segment written twice ("wind, petals, wind") is the same words read the same way: it is
    # tokenized and read once, and what it found is added again where it comes again.
    segments: dict[str, str | list[Token]] = {}
    for raw in SEGMENT_BREAK.split(text):
        raw = raw.strip()
        if raw:
            if raw not in segments:
                tag = tag_style(raw, vocabulary)
                segments[raw] = tag if tag is not None else tokenize(raw)
            entries.append(segments[raw])

    series_context = find_series_context([e for e in segments.values() if isinstance(e, list)], vocabulary)
    people = People()
    readings: dict[int, SegmentReading] = {}
    for entry in entries:
        if isinstance(entry, str):
            add_written_tag(entry, analysis, general, explicit_counts, vocabulary)
            continue
        reading = readings.get(id(entry))
        if reading is None:
            reading = readings[id(entry)] = read_segment(entry, vocabulary, series_context)
        reading.add_to(analysis, general, people)

    for character in analysis.characters:
        series = vocabulary.character(character).series
        if series:
            analysis.series.append(series)
    general = add_related(general, vocabulary.relations, also_present=analysis.characters)
    inferred = count_tags(people, analysis.characters, general, vocabulary, imply_person=not explicit_counts)
    analysis.counts = merge_counts(explicit_counts, inferred)
    if "no_humans" in general and not analysis.counts:
        analysis.counts = ["no_humans"]
    if "no_humans" in analysis.counts and any(tag in lexicon.LANDSCAPE_TAGS for tag in general):
        general.append("scenery")
    # Enrichment comes after the counts: scenery and light never decide who is in the picture.
    general = add_related(general, vocabulary.enrichments, also_present=analysis.characters)
    forbidden = set(analysis.negated)
    analysis.general = [t for t in unique(general) if not is_forbidden(t, forbidden)
                        and t != "no_humans" and t not in analysis.counts]
    analysis.characters = unique(analysis.characters)
    analysis.series = unique(analysis.series)
    analysis.negated = unique(analysis.negated)
    return analysis


@dataclass
class SegmentReading:
    """What one segment of words adds to the analysis: names, tags, negated tags and people."""
    found: Analysis  # its characters, series and negated tags (names first, then matches)
    general: list[str]
    people: People

    def add_to(self, analysis: Analysis, general: list[str], people: People):
        analysis.characters.extend(self.found.characters)
        analysis.series.extend(self.found.series)
        analysis.negated.extend(self.found.negated)
        general.extend(self.general)
        people.mentions.extend(self.people.mentions)
        people.collectives.extend(self.people.collectives)
        if not people.pronoun_gender:
            people.pronoun_gender = self.people.pronoun_gender


def read_segment(tokens: list[Token], vocabulary: Vocabulary, series_context: set[str]) -> SegmentReading:
    reading = SegmentReading(Analysis(), [], People())
    mark_negations(tokens)
    matches = match_segment(tokens, vocabulary, series_context, reading.found)
    apply_rules(tokens, matches, vocabulary)
    for match in matches:
        (reading.found.negated if match.negated else reading.general).extend(match.tags + match.derived)
    find_subjects(tokens, reading.people)
    return reading


def add_written_tag(tag: str, analysis: Analysis, general: list[str], explicit_counts: list[str],
                    vocabulary: Vocabulary):
    """A tag the prompt already wrote as a tag keeps its place among the others."""
    if tag in RATING_WORDS:
        analysis.rating = analysis.rating or tag
    elif tag in YEAR_WORDS:
        return
    elif COUNT_TAG.match(tag):
        explicit_counts.append(tag)
    elif vocabulary.category(tag) == CHARACTER:
        analysis.characters.append(tag)
    elif vocabulary.category(tag) == COPYRIGHT:
        analysis.series.append(tag)
    elif vocabulary.is_descriptive(tag):
        general.append(tag)


def prepare(prompt: str) -> str:
    """NFKC-normalize but keep case (a capital can mark a name), and undo prompt-UI syntax."""
    text = unicodedata.normalize("NFKC", prompt).replace("\u2019", "'")
    text = WEIGHTED.sub(r"\1", text)
    text = text.replace(" \\(", "_(").replace("\\(", "(").replace("\\)", ")")
    return EMPHASIS.sub(" ", text)


def tag_style(segment: str, vocabulary: Vocabulary) -> str | None:
    """A segment written as a Danbooru tag ("spiky_hair", "1girl", "solo") -> its canonical tag.
    Plain words go through the free-text rules instead, where "man" is a person, not male_focus."""
    lowered = segment.lower().strip()
    if lowered in RATING_WORDS or lowered in YEAR_WORDS:
        return lowered
    if "_" in lowered or COUNT_TAG.match(lowered.replace(" ", "_")):
        return vocabulary.resolve(lowered)
    return None


def tokenize(segment: str) -> list[Token]:
    segment = NEGATION_CONTRACTION.sub(" not", segment.replace("_", " "))
    tokens = []
    for original in words(segment):
        lowered = original.lower()
        lowered = WORD_REWRITES.get(lowered, lowered)
        if lowered:
            # "winding", "bowing": a word of its own, not an inflection of the noun wind or bow.
            word_stem = lowered if lowered in lexicon.NOT_INFLECTIONS else stem(lowered)
            tokens.append(Token(lowered, word_stem, original[0].isupper(), not tokens))
    return tokens


def content(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.text not in lexicon.ARTICLES]


def is_subject(token: Token) -> bool:
    return token.stem in lexicon.PRIMARY_SUBJECT_STEMS or token.stem in lexicon.ROLE_SUBJECT_STEMS


def mark_negations(tokens: list[Token]):
    """Flag the noun phrase after "no", "without", "not": "without glasses, short hair" negates
    glasses only; "no glasses or hat" both; "no glasses and a hat" only glasses."""
    for index, token in enumerate(tokens):
        if token.text not in lexicon.NEGATORS:
            continue
        position, marked = index + 1, 0
        while position < len(tokens):
            current = tokens[position]
            if marked == 0 and (current.stem in lexicon.NEGATION_LEADING_VERBS or current.text in lexicon.ARTICLES
                                or current.text == "any"):
                position += 1
                continue
            if current.text in ("or", "nor"):
                position += 1
                continue
            if current.text == "and":
                following = tokens[position + 1] if position + 1 < len(tokens) else None
                if following is None or following.text in lexicon.ARTICLES or following.text in lexicon.QUANTITIES \
                        or is_subject(following) or following.text in lexicon.NEGATORS:
                    break
                position += 1
                continue
            if marked and (current.text in lexicon.NEGATION_STOPS or is_subject(current)
                           or (current.text.endswith("ing") and len(current.text) > 5)):
                break
            current.negated = True
            marked += 1
            position += 1


def name_allowed(span: list[Token], surface: str, tag: str, vocabulary: Vocabulary, series_context: set[str],
                 previous: Token | None) -> bool:
    """Several-word names always match. A one-word name that is also an English word ("Link",
    "Power", "Bleach") needs a safe context: a capital mid-sentence, its series named, or "from",
    "as" before it. Other one-word names need a capital, unless we know them well ("naruto")."""
    if len(span) > 1:
        return True
    token = span[0]
    related = vocabulary.character(tag).series if vocabulary.category(tag) == CHARACTER else tag
    if related in series_context or (previous is not None and previous.text in SERIES_CONTEXT_WORDS):
        return True
    if surface in vocabulary.english_words:
        return token.capitalized and not token.first
    return token.capitalized or vocabulary.is_well_known(surface, tag)


def find_series_context(segments: list[list[Token]], vocabulary: Vocabulary) -> set[str]:
    """Series the prompt names, so "Rin" can mean the Rin of that series."""
    found = set()
    for tokens in segments:
        items = content(tokens)
        for start in range(len(items)):
            if items[start].text not in vocabulary.name_first_words:
                continue
            previous = items[start - 1] if start else None
            for length in range(reach(items, start, vocabulary), 0, -1):
                span = items[start:start + length]
                surface = " ".join(t.text for t in span)
                candidates = [t for t in vocabulary.names_for(surface)
                              if name_allowed(span, surface, t, vocabulary, set(), previous)]
                if candidates:
                    chosen = choose_name(tuple(candidates), vocabulary, set(), previous, surface)
                    series = series_named(chosen, vocabulary, previous)
                    if not series and len(candidates) == 1 and vocabulary.category(chosen) == CHARACTER:
                        # "Asuna and Kirito": Kirito can only be from Sword Art Online, so Asuna too.
                        series = vocabulary.character(chosen).series
                    if series:
                        found.add(series)
                        break
    return found


def series_named(tag: str, vocabulary: Vocabulary, previous: Token | None) -> str:
    """The series a name stands for: a series itself, or after "from" a character's series
    ("Link from Zelda": Zelda is the game here, not the princess)."""
    if vocabulary.category(tag) == COPYRIGHT:
        return tag
    if previous is not None and previous.text == "from":
        return vocabulary.character(tag).series
    return ""


def reach(items: list[Token], start: int, vocabulary: Vocabulary) -> int:
    window = items[start:start + MAX_PHRASE_WORDS]
    return vocabulary.reach([t.text for t in window], [t.stem for t in window])


def choose_name(candidates: tuple[str, ...], vocabulary: Vocabulary, series_context: set[str],
                previous: Token | None, surface: str = "") -> str:
    """Of the characters and series a name may mean: a series after "from", a character called
    exactly that, one from a series the prompt names, else the most used."""
    if previous is not None and previous.text == "from":
        for tag in candidates:
            if vocabulary.category(tag) == COPYRIGHT:
                return tag
    for tag in candidates:
        # "Violet Evergarden" is the character unless it follows "from"; "Fate" stays the series,
        # since Fate Testarossa is only partly called that.
        if vocabulary.category(tag) == CHARACTER and tag.replace("_", " ") == surface:
            return tag
    for tag in candidates:
        related = vocabulary.character(tag).series if vocabulary.category(tag) == CHARACTER else tag
        if related in series_context:
            return tag
    return candidates[0]


def lookup(span: list[Token], vocabulary: Vocabulary, series_context: set[str], previous: Token | None,
           following: list[Token]) -> tuple[str, list[str]] | None:
    """The tags a span of words stands for, as (kind, tags), or None. Exact spellings beat stems,
    hand phrases beat the vocabulary, and a character or series name wins when something vouches
    for it (its series is named, it is a hand-written name, or it is several words long)."""
    surface = " ".join(t.text for t in span)
    stems = " ".join(t.stem for t in span)
    single = len(span) == 1
    if span[0].text in lexicon.NEGATORS:
        # "no ribbon" is a negation, never the tag no_ribbon; only hand phrases ("no people" ->
        # no_humans, "no shoes" -> barefoot) read a negation as a tag.
        phrase = vocabulary.phrase(surface, stems)
        return ("phrase", list(phrase)) if phrase and len(span) > 1 else None
    exact_phrase = vocabulary.phrases.get(surface)
    if exact_phrase is not None:
        return "phrase", list(exact_phrase)
    if single and (span[0].text in lexicon.NOT_A_TAG_ALONE or span[0].text.isdigit()):
        return None
    name = None
    candidates = [t for t in vocabulary.names_for(surface)
                  if name_allowed(span, surface, t, vocabulary, series_context, previous)]
    if candidates:
        name = choose_name(tuple(candidates), vocabulary, series_context, previous, surface)
        name = series_named(name, vocabulary, previous) or name
        related = vocabulary.character(name).series if vocabulary.category(name) == CHARACTER else name
        if related in series_context or vocabulary.is_hand_named(surface, name) or not single:
            return "name", [name]
    stem_blocked = single and span[0].stem in lexicon.NOT_A_TAG_ALONE_STEMS
    for kind, tags, spelled in (
            ("general", vocabulary.general_exact(surface), None),
            ("phrase", None if stem_blocked else vocabulary.phrase_stems.get(stems), vocabulary.phrase_spelling),
            ("general", None if stem_blocked else vocabulary.general_stem(stems), vocabulary.general_spelling)):
        if tags is None:
            continue
        if spelled is not None and not inflections_of(span, spelled(stems)):
            continue
        if single and modifies_following(span[0], following, vocabulary):
            return None
        return kind, [tags] if isinstance(tags, str) else list(tags)
    if len(span) == 2 and span[0].text in lexicon.COLOURS:
        # "golden hair" -> gold_hair -> blonde_hair; "silver eyes" -> grey_eyes
        coloured = vocabulary.resolve(f"{lexicon.COLOURS[span[0].text]}_{span[1].text}")
        if coloured is not None:
            return "general", [coloured]
    if name is not None:
        return "name", [name]
    return None


def inflections_of(span: list[Token], spelling: str | None) -> bool:
    """Whether the words are inflections of a key's words ("smiling" of "smile", "windows" of
    "window"), not another word that happens to stem alike ("late" and "lats")."""
    if spelling is None:
        return True
    key_words = spelling.split(" ")
    return len(key_words) != len(span) or all(
        same_word(t.text, w) for t, w in zip(span, key_words))


def same_word(a: str, b: str) -> bool:
    if a == b or IRREGULAR.get(a, a) == IRREGULAR.get(b, b):
        return True
    shorter, longer = sorted((a, b), key=len)
    base = shorter.removesuffix("e")
    if shorter.endswith("y") and longer in (shorter[:-1] + "ies", shorter[:-1] + "ied"):
        return True
    if any(longer == shorter + ending for ending in ("s", "es", "ing", "ed", "d", "er", "y")):
        return True
    # smile -> smiling, run -> running: vowel endings drop a final e or double the consonant.
    return any(longer in (base + ending, base + base[-1] + ending) for ending in ("ing", "ed", "er", "y"))


def modifies_following(token: Token, following: list[Token], vocabulary: Vocabulary) -> bool:
    """"short" in "short black hair" describes the hair (short_hair), it is not `shorts`."""
    for later in following[:3]:
        if later.text in lexicon.NOT_A_TAG_ALONE and later.text not in lexicon.COLOURS:
            return False
        if vocabulary.general(f"{token.text} {later.text}", f"{token.stem} {later.stem}"):
            return True
    return False


class SegmentLookups:
    """`reach` and `lookup` over one segment's words, each span computed once: the overlap check
    asks about the spans the main loop tries next. Only the words' text, stem, capital and place
    decide a lookup, and matching changes none of them."""

    def __init__(self, items: list[Token], vocabulary: Vocabulary, series_context: set[str]):
        self.items, self.vocabulary, self.series_context = items, vocabulary, series_context
        self.reaches: dict[int, int] = {}
        self.found: dict[tuple[int, int], tuple[str, list[str]] | None] = {}

    def reach(self, start: int) -> int:
        found = self.reaches.get(start)
        if found is None:
            found = self.reaches[start] = reach(self.items, start, self.vocabulary)
        return found

    def lookup(self, start: int, length: int) -> tuple[str, list[str]] | None:
        key = (start, length)
        if key in self.found:
            return self.found[key]
        items = self.items
        found = self.found[key] = lookup(items[start:start + length], self.vocabulary, self.series_context,
                                         items[start - 1] if start else None, items[start + length:])
        return found


def match_segment(tokens: list[Token], vocabulary: Vocabulary, series_context: set[str],
                  analysis: Analysis) -> list[Match]:
    items = content(tokens)
    lookups = SegmentLookups(items, vocabulary, series_context)
    matches: list[Match] = []
    start = 0
    while start < len(items):
        found = None
        length = lookups.reach(start)
        while length > 0:
            found = lookups.lookup(start, length)
            if found is None:
                length -= 1
                continue
            overlap = overlapping_match(lookups, start, length)
            if overlap is None:
                break
            # "holding paper lantern": paper_lantern, not holding_paper; English phrases end in
            # their noun, so of two equally long overlapping matches the later one wins.
            length, found = overlap - start, None
        if found is None:
            start += 1
            continue
        kind, tags = found
        span = items[start:start + length]
        for token in span:
            token.consumed = True
            token.in_phrase = length > 1
            token.in_name = kind == "name"
        negated = all(t.negated for t in span) and span[0].text not in lexicon.NEGATORS
        if kind == "name":
            tag = tags[0]
            if negated:
                analysis.negated.append(tag)
            elif vocabulary.category(tag) == CHARACTER:
                analysis.characters.append(tag)
            else:
                analysis.series.append(tag)
        elif tags:
            matches.append(Match(start, start + length, tags, words=span, negated=negated))
        start += length
    return matches


def overlapping_match(lookups: SegmentLookups, start: int, length: int) -> int | None:
    """Where a match inside start..start+length begins that reaches further and is at least as long,
    or None."""
    end = start + length
    for inner in range(start + 1, end):
        for inner_length in range(lookups.reach(inner), end - inner, -1):
            if inner_length >= length and lookups.lookup(inner, inner_length):
                return inner
    return None


def apply_rules(tokens: list[Token], matches: list[Match], vocabulary: Vocabulary):
    items = content(tokens)
    by_start = {m.start: m for m in matches}
    superseded: set[int] = set()
    for match in matches:
        if match.negated or id(match) in superseded:
            continue
        add_modifiers(items, match, vocabulary)
        if add_trailing_participle(items, match, vocabulary) and match.end in by_start:
            superseded.add(id(by_start[match.end]))  # "falling" was only the petals' way of moving
        add_plain_noun(match, vocabulary)
        add_quantity(items, match, vocabulary)
        add_worn_in_hair(items, match, vocabulary)
        following = by_start.get(match.end + 1)
        if following is not None and match.end < len(items) and items[match.end].text == "of":
            add_of_compound(items, match, following, vocabulary)
    matches[:] = [m for m in matches if id(m) not in superseded]
    for match in matches:
        if not match.negated:
            add_compound_parts(match, vocabulary)
    for index, token in enumerate(items):
        prefix = lexicon.VERB_PREFIXES.get(token.stem)
        if prefix and not token.negated and not token.in_phrase:
            obj = object_of(index, matches)
            if obj is not None and head_of(obj.tags[0]) not in lexicon.NOT_STANDALONE_HEADS:
                obj.derived.extend(verb_object_tags(prefix, obj.tags[0], vocabulary))


def add_compound_parts(match: Match, vocabulary: Vocabulary):
    """A compound tag also gives its object or place: playing_guitar -> guitar and
    playing_instrument, holding_umbrella -> umbrella, on_rooftop -> rooftop, above_clouds -> cloud.
    The words matter too: "holding a katana" reads as holding_sword, and the katana stays."""
    if len(match.words) > 1 and match.words[0].stem in lexicon.VERB_PREFIXES:
        rest = match.words[1:]
        named = vocabulary.general(" ".join(t.text for t in rest), " ".join(t.stem for t in rest))
        if named and named not in match.tags:
            match.derived.append(named)
    for tag in list(match.tags):
        positional = POSITIONAL.match(tag)
        if positional:
            # sitting_on_branch -> sitting, branch; cat_on_lap -> cat (a lap is no place of its own)
            for part in positional.group(1, 2):
                part_tag = vocabulary.resolve(part)
                if part_tag and vocabulary.category(part_tag) == GENERAL and part not in lexicon.NOT_A_PLACE \
                        and part not in lexicon.NOT_A_TAG_ALONE:
                    match.derived.append(part_tag)
            continue
        prefix, _, rest = tag.partition("_")
        if not rest or rest in lexicon.NOT_STANDALONE_HEADS or rest in lexicon.NOT_A_TAG_ALONE:
            continue
        if prefix in lexicon.VERB_PREFIXES.values():
            part = vocabulary.resolve(rest)
            if part:
                match.derived.append(part)
                if vocabulary.resolve(prefix) == prefix:
                    match.derived.append(prefix)
                match.derived.extend(t for t in verb_object_tags(prefix, part, vocabulary) if t != tag)
        elif prefix in lexicon.PLACE_PREFIXES and rest not in lexicon.NOT_A_PLACE:
            part = vocabulary.resolve(rest)
            if part and vocabulary.category(part) == GENERAL:
                match.derived.append(part)


def head_of(tag: str) -> str:
    return strip_qualifier(tag).rsplit("_", 1)[-1]


def add_modifiers(items: list[Token], match: Match, vocabulary: Vocabulary):
    """Describing words before a noun make compound tags: "long silver hair" -> long_hair beside
    grey_hair, "pink and white frilly dress" -> pink_dress, white_dress."""
    head = head_of(match.tags[0])
    position = match.start - 1
    used = 0
    while position >= 0 and used < 3:
        token = items[position]
        if token.text in ("and", "or") or token.text == ",":
            position -= 1
            continue
        if token.consumed or token.negated:
            break
        colour = lexicon.COLOURS.get(token.text)
        if colour is None and (token.text in lexicon.NOT_A_TAG_ALONE or token.text in lexicon.QUANTITIES):
            break
        compound = vocabulary.general(f"{token.text} {head}", f"{token.stem} {stem(head)}")
        if compound is None and colour:
            # "pink twintails" is pink hair worn in twintails; a "white sundress" is a white_dress.
            kind = "hair" if match.tags[0] in lexicon.HAIRSTYLES else lexicon.GARMENT_KINDS.get(match.tags[0], head)
            compound = vocabulary.resolve(f"{colour}_{head}") or vocabulary.resolve(f"{colour}_{kind}")
        if compound is not None:
            match.derived.insert(0, compound)
            if colour:
                add_plain_noun_of(compound, match, vocabulary)
        used += 1
        position -= 1


def add_trailing_participle(items: list[Token], match: Match, vocabulary: Vocabulary) -> bool:
    """"petals falling" is falling_petals, "hair flowing" flowing_hair."""
    if match.end < len(items) and items[match.end].text.endswith("ing") and len(match.words) == 1:
        participle, noun = items[match.end], match.words[0]
        compound = vocabulary.general(f"{participle.text} {noun.text}", f"{participle.stem} {noun.stem}")
        if compound is not None and compound not in match.tags:
            match.derived.append(compound)
            return True
    return False


def add_plain_noun(match: Match, vocabulary: Vocabulary):
    for tag in list(match.tags):
        add_plain_noun_of(tag, match, vocabulary)


def add_plain_noun_of(tag: str, match: Match, vocabulary: Vocabulary):
    """green_scarf -> also scarf, long_pointy_ears -> pointy_ears: a describing word narrows the
    tag, the thing is still that thing."""
    first, _, rest = tag.partition("_")
    if (first in lexicon.COLOURS.values() or first in lexicon.ADJECTIVE_MODIFIERS) and rest \
            and rest not in lexicon.NOT_STANDALONE_HEADS and vocabulary.resolve(rest) == rest \
            and rest not in match.derived:
        match.derived.append(rest)


def add_quantity(items: list[Token], match: Match, vocabulary: Vocabulary):
    """"nine tails", "two cats" -> multiple_tails, multiple_cats, where Danbooru has such a tag."""
    for back in (1, 2):
        position = match.start - back
        if position < 0:
            return
        word = items[position].text
        count = lexicon.QUANTITIES.get(word, lexicon.MANY if word in lexicon.MANY_WORDS else 0)
        if count == lexicon.MANY or count >= 2:
            for noun in dict.fromkeys((match.tags[0], head_of(match.tags[0]))):
                plural = vocabulary.resolve(f"multiple_{noun}") or vocabulary.resolve(f"multiple_{noun}s")
                if plural:
                    match.derived.append(plural)
                    break
            return


def add_worn_in_hair(items: list[Token], match: Match, vocabulary: Vocabulary):
    """"a red bow in her hair" -> hair_bow, "a flower in her hair" -> hair_flower."""
    following = [t.text for t in items[match.end:match.end + 2]]
    if following == ["in", "hair"]:
        worn = vocabulary.resolve(f"hair_{head_of(match.tags[0])}")
        if worn is not None:
            match.derived.append(worn)


def add_of_compound(items: list[Token], match: Match, following: Match, vocabulary: Vocabulary):
    """"a field of flowers" -> flower_field."""
    owner = " ".join(t.text for t in items[match.start:match.end])
    owned = items[following.end - 1]
    compound = vocabulary.general(f"{owned.text} {owner}", f"{owned.stem} {stem(owner)}")
    if compound is not None:
        match.derived.append(compound)


def object_of(verb_index: int, matches: list[Match]) -> Match | None:
    """The thing a verb acts on: the next tag within a few words, or (Japanese and Chinese put
    the verb last) the one just before."""
    after = [m for m in matches if verb_index < m.start <= verb_index + 4 and not m.negated]
    if after:
        return after[0]
    before = [m for m in matches if verb_index - 3 <= m.end - 1 < verb_index and not m.negated]
    return before[-1] if before else None


def verb_object_tags(prefix: str, obj: str, vocabulary: Vocabulary) -> list[str]:
    bare = strip_qualifier(obj)
    kind = lexicon.OBJECT_KINDS.get(obj) or lexicon.OBJECT_KINDS.get(bare)
    candidates = [f"{prefix}_{obj}", f"{prefix}_{bare}", f"{prefix}_{head_of(obj)}", f"{bare}_{prefix}"]
    if kind:
        candidates += [f"{prefix}_{kind}", f"{prefix}_{strip_qualifier(kind)}"]
    found = []
    for candidate in candidates:
        tag = vocabulary.resolve(candidate)
        if tag and tag not in found and tag != obj:
            found.append(tag)
    if kind is None and (bare in lexicon.ANIMAL_TAGS or obj.endswith("_(animal)")) \
            or kind in lexicon.ANIMAL_TAGS:
        # holding_cat is also holding_animal: Danbooru tags both.
        animal = vocabulary.resolve(f"{prefix}_animal")
        if animal:
            found.append(animal)
    if prefix == "playing" and kind in ("instrument", "sports"):
        found.append(f"playing_{kind}")
    if found and prefix == "holding":
        found.append("holding")
    return found


def find_subjects(tokens: list[Token], people: People):
    """Collect the nouns naming people, with the number before each."""
    for index, token in enumerate(tokens):
        if token.negated or token.in_name:
            continue
        if token.text in lexicon.PRONOUN_GENDER and not people.pronoun_gender:
            people.pronoun_gender = lexicon.PRONOUN_GENDER[token.text]
        gender = lexicon.PRIMARY_SUBJECT_STEMS.get(token.stem) if token.text != "tomboy" else "f"
        if gender is None and token.stem.endswith(("girl", "boy")) and token.stem not in lexicon.ROLE_SUBJECT_STEMS:
            gender = "f" if token.stem.endswith("girl") else "m"  # catgirl, foxboy, schoolboy
        if gender is not None:
            people.mentions.append(Mention(gender, quantity(tokens, index), True))
        elif token.stem in lexicon.ROLE_SUBJECT_STEMS and token.text != "twin":  # "twin braids", "twin girls"
            # "an elf archer" is one person: a role right after a role describes the same one.
            if not (index and tokens[index - 1].stem in lexicon.ROLE_SUBJECT_STEMS):
                people.mentions.append(Mention(lexicon.ROLE_SUBJECT_STEMS[token.stem], quantity(tokens, index), False))
        elif token.stem in lexicon.COLLECTIVE_SUBJECTS:
            people.collectives.append(lexicon.COLLECTIVE_SUBJECTS[token.stem])


def quantity(tokens: list[Token], index: int) -> int:
    """How many the noun at index names: a number or "several" just before it; more than one for a
    plural; 0 (someone already counted, else one) for "the girl" or a bare "girl"."""
    token = tokens[index]
    for back in range(1, 4):
        position = index - back
        if position < 0:
            break
        word = tokens[position].text
        if word in lexicon.QUANTITIES:
            return lexicon.QUANTITIES[word]
        if word in lexicon.MANY_WORDS:
            return lexicon.MANY
        if word in lexicon.DEFINITE:
            break  # "the girl": the one already named; "the girls": several
        if word in lexicon.NEGATION_STOPS or is_subject(tokens[position]):
            break
    plural = (token.text != token.stem and token.text.endswith("s")) or token.text in lexicon.IRREGULAR_PLURALS
    # A bare "girl" ("girl, blue hair, girl smiling") is the girl already named, or the first one.
    return lexicon.MANY if plural else 0


def count_tags(people: People, characters: list[str], general: list[str], vocabulary: Vocabulary, *,
               imply_person: bool = True) -> list[str]:
    """1girl / 2boys / multiple_girls / solo / no_humans from the people named, the characters,
    and, when nobody is named, from tags only a person has (hair colour, a smile)."""
    primaries = [m for m in people.mentions if m.primary]
    counted = primaries or ([] if characters else [m for m in people.mentions if not m.primary])
    subjects = Tally()
    for mention in counted:
        count = mention.count or (0 if subjects.get(mention.gender) else 1)
        if count:
            subjects.add(mention.gender, count)
    if not counted:
        for collective in people.collectives:
            for gender, count in collective.items():
                subjects.add(gender, count)
    cast = [vocabulary.character(c) for c in characters]
    female = merge(subjects.female, sum(c.gender == "f" for c in cast))
    male = merge(subjects.male, sum(c.gender == "m" for c in cast))
    unstated = sum(c.gender == "o" for c in cast) if cast else subjects.unstated
    if imply_person and female == male == unstated == 0 and not cast and "no_humans" not in general:
        unstated = int(any(t in lexicon.PERSON_CUE_TAGS or t.endswith(lexicon.PERSON_CUE_SUFFIXES) for t in general))
    if unstated == 1 and female == male == 0:
        gender = person_gender(people, general, named_role=bool(counted) or bool(cast))
        if gender == "f":
            female, unstated = 1, 0
        elif gender == "m":
            male, unstated = 1, 0
    tags = []
    for count, noun in ((female, "girl"), (male, "boy")):
        if count == lexicon.MANY:
            tags.append(f"multiple_{noun}s")
        elif count == 1:
            tags.append(f"1{noun}")
        elif count > 1:
            tags.append(f"{count}{noun}s" if count <= 5 else f"6+{noun}s")
            tags.append(f"multiple_{noun}s")
    total = sum(2 if c == lexicon.MANY else c for c in (female, male, unstated))
    if total == 1:
        tags.append("solo")
    elif total == 0 and (general or cast) and not any(c.gender in ("f", "m", "o") for c in cast) \
            and not subjectless_pose(general):
        tags.append("no_humans")  # a scene with nobody in it; an unreadable prompt gets no count at all
    return tags


def subjectless_pose(general: list[str]) -> bool:
    """"sitting on a bench": a pose says someone is there though nobody is named, so the picture
    is not one of no_humans; which someone is left to the model. An animal doing it ("a cat
    sleeping on a windowsill") is the subject, and the scene has no humans."""
    if not any(tag in lexicon.POSE_TAGS for tag in general):
        return False
    return not any(tag in lexicon.ANIMAL_TAGS or tag.endswith("_(animal)") for tag in general)


def merge_counts(written: list[str], inferred: list[str]) -> list[str]:
    """Count tags the prompt wrote win; people it names in words add their gender's tags when the
    written ones leave that gender out ("a girl, 1boy" -> 1boy, 1girl)."""
    if not written:
        return inferred
    covered = {count_gender(t) for t in written}
    return [*written, *(t for t in inferred if count_gender(t) and count_gender(t) not in covered)]


def count_gender(tag: str) -> str:
    return "f" if "girl" in tag else "m" if "boy" in tag else ""


def person_gender(people: People, general: list[str], *, named_role: bool) -> str:
    """The gender of one person the prompt does not give one: its pronouns, then its clothes,
    then anime's default (a girl) unless it is a named role such as "a knight" or "a chef"."""
    if people.pronoun_gender:
        return people.pronoun_gender
    if any(t in lexicon.FEMALE_CUE_TAGS for t in general):
        return "f"
    if any(t in lexicon.MALE_CUE_TAGS for t in general):
        return "m"
    return "" if named_role else "f"


def merge(subject_count: int, character_count: int) -> int:
    """"Hatsune Miku, a girl with..." is one girl: named characters and nouns overlap."""
    if subject_count == lexicon.MANY:
        return lexicon.MANY
    return max(subject_count, character_count)


def add_related(general: list[str], relations: tuple[Relation, ...], *, also_present: list[str]) -> list[str]:
    """Tags implied by others (data/related.txt) or that enrich them (data/enrich.txt), placed
    after the tag that brings them."""
    present = set(general) | set(also_present)
    result = list(general)
    for relation in relations:
        if all(tag in present for tag in relation.requires):
            anchor = result.index(relation.requires[-1]) + 1 if relation.requires[-1] in result else len(result)
            for offset, tag in enumerate(t for t in relation.adds if t not in present):
                result.insert(anchor + offset, tag)
                present.add(tag)
    return result


def is_forbidden(tag: str, forbidden: set[str]) -> bool:
    """A negated "ribbon" also rules out hair_ribbon; a negated "hat" rules out witch_hat."""
    if tag in forbidden:
        return True
    bare = QUALIFIED.sub("", tag)
    return any(bare.endswith("_" + f) or bare.startswith(f + "_") for f in forbidden if "_" not in f)


def unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))
