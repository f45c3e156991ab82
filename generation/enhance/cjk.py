"""Japanese and Chinese prompts: segmented into words, glossed word by word into English, then read
by the same rules as English.

- Words, not characters. Japanese goes through MeCab (fugashi + unidic-lite), Chinese through
  jieba (rjieba). The tables are matched against a word or a run of consecutive words, never
  against part of a word: 花 (flower) does not fire inside 花嫁 (bride), 风 (wind) not inside
  画风 (drawing style). A word no table knows is split only when every piece of it is a known word
  (戴帽子 -> 戴 + 帽子), otherwise it is dropped.
- Three tables, first match wins at each length: the hand table data/cjk.txt (particles,
  negation, counts, what dictionaries get wrong), then the dictionary tables derived from JMdict
  and CC-CEDICT by scripts/build_cjk.py (words of two characters or more).
- Character names in kanji, kana or hanzi are romanised (the word's reading from UniDic; pinyin;
  for hanzi in a Chinese prompt both, since Japanese characters keep their kanji in Chinese) and
  looked up among the character tags with the usual spelling variants folded (ou/oo/ō -> o,
  si/shi, tu/tsu...). The name is emitted as the tag spells it, for the English rules to decide.
- Negation: Japanese puts it after the noun (眼鏡なし, 帽子をかぶっていない), Chinese before
  (没有眼镜, 没戴帽子). Counts: a numeral with a counter (二人, 3人, 四个, 两位) becomes the English
  number; a count after its noun (女の子四人) is moved before it.
"""

import bisect
import gzip
import functools
import re
import sys
import threading
from dataclasses import dataclass
from typing import NamedTuple

import fugashi
import rjieba
import unidic_lite

from .vocabulary import CHARACTER, DATA_DIR, Vocabulary, strip_qualifier

CLAUSE_BREAK = ","
JOINER = "."
NEGATE_PREVIOUS = "!no"
PLURAL_PREVIOUS = "!plural"
HAND_ON_PREVIOUS = "!hand_on"
HAND_ON_NEXT = "!hand_on_next"
BODY_PARTS = frozenset("cheek cheeks face chin head chest hip hips forehead mouth ear ears eye eyes neck".split())
IRREGULAR_PLURAL_OF = {"child": "children", "man": "men", "woman": "women", "person": "people", "people": "people",
                       "children": "children", "men": "men", "women": "women", "mouse": "mice"}
MAX_SPAN = 6  # words in one table entry or name
MAX_NAME_SPAN = 4
MAX_CANDIDATE_CHARS = 4  # an everyday word read as a name is short (胡桃, 刻晴)
# Word runs whose meaning was looked up: a long prompt asks about the same few hundred again and
# again (every start of a run, every name check). Bounded: a few MB at most.
PROBE_CACHE_SIZE = 1 << 14

KANA = re.compile(r"[\u3040-\u30ff]")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
NAME_CHARS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
CJK_RUN = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff9f]+")
NUMERAL_PREFIX = re.compile(r"^[0-9一二两兩三四五六七八九十]+$")
NUMERAL_COUNTER = re.compile(r"^([0-9一二两兩三四五六七八九十]+)(人|个|個|位|名|匹|只|隻|頭|头)$")
NUMERALS = {"一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
            "十": 10}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine", 10: "ten"}
NEGATION_PREFIXES = frozenset("没沒不无無别別")
# Kanji variants the segmenter reads in only one of their forms (names are often written in the
# older one: 竈門禰豆子). Folded before segmenting; NFKC leaves them apart.
KANJI_VARIANTS = str.maketrans({"禰": "祢", "髙": "高", "﨑": "崎", "德": "徳", "邊": "辺", "邉": "辺",
                                "櫻": "桜", "澤": "沢", "齋": "斎", "齊": "斉", "濱": "浜", "瀨": "瀬", "廣": "広"})
MODIFIER_MARKS = frozenset("的 之".split())
JAPANESE_CLAUSE_MARKS = frozenset("、 。".split())
COLOUR_WORDS = frozenset("red orange yellow green blue purple pink white black grey gray brown silver golden gold blonde".split())
PERSON_WORDS = frozenset("girl girls boy boys woman women man men person people child children".split())
# UniDic parts of speech that a negation skips back over to reach its noun (帽子をかぶっていない).
VERBAL_POS = frozenset("動詞 助動詞 助詞 接尾辞 形状詞".split())
NAME_BREAK_POS = frozenset("動詞 助動詞 助詞 補助記号".split())

# Hepburn romaji of katakana (hiragana is shifted to katakana first).
_KANA_ROMAJI = {
    **dict(zip("アイウエオ", "a i u e o".split())), **dict(zip("カキクケコ", "ka ki ku ke ko".split())),
    **dict(zip("サシスセソ", "sa shi su se so".split())), **dict(zip("タチツテト", "ta chi tsu te to".split())),
    **dict(zip("ナニヌネノ", "na ni nu ne no".split())), **dict(zip("ハヒフヘホ", "ha hi fu he ho".split())),
    **dict(zip("マミムメモ", "ma mi mu me mo".split())), **dict(zip("ヤユヨ", "ya yu yo".split())),
    **dict(zip("ラリルレロ", "ra ri ru re ro".split())), **dict(zip("ワヰヱヲン", "wa i e o n".split())),
    **dict(zip("ガギグゲゴ", "ga gi gu ge go".split())), **dict(zip("ザジズゼゾ", "za ji zu ze zo".split())),
    **dict(zip("ダヂヅデド", "da ji zu de do".split())), **dict(zip("バビブベボ", "ba bi bu be bo".split())),
    **dict(zip("パピプペポ", "pa pi pu pe po".split())), "ヴ": "vu",
    **dict(zip("ァィゥェォ", "a i u e o".split())), **dict(zip("ャュョ", "ya yu yo".split())),
}


@functools.lru_cache(maxsize=PROBE_CACHE_SIZE)
def romaji(kana: str) -> str:
    """Katakana or hiragana -> Hepburn: キリサメ -> kirisame, ジョウ -> jou, マッチ -> matchi."""
    kana = "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in kana)
    out: list[str] = []
    double_next = False
    for char in kana:
        if char == "ッ":
            double_next = True
            continue
        if char == "ー":
            if out:
                out.append(out[-1][-1])
            continue
        sound = _KANA_ROMAJI.get(char)
        if sound is None:
            continue
        if char in "ャュョ" and out and out[-1].endswith("i") and len(out[-1]) >= 2:
            base = out.pop()[:-1]  # キョ -> kyo, ショ -> sho, ジョ -> jo
            sound = (base if base.endswith(("sh", "ch", "j")) else base + "y") + sound[1]
        elif char in "ァィゥェォ" and out:
            base = out.pop()
            sound = base[:-1] + sound  # ティ -> ti, ファ -> fa
        if double_next:
            sound = ("t" if sound.startswith("ch") else sound[0]) + sound
            double_next = False
        out.append(sound)
    return "".join(out)


@functools.lru_cache(maxsize=PROBE_CACHE_SIZE)
def name_key(romanised: str) -> str:
    """One spelling for the variants of a romanised name: Gojou / Gojō / Gojoh / Gojo -> gojo,
    Tsu/Tu, Shi/Si, Chi/Ti, Fu/Hu, Ji/Zi; letters only."""
    text = romanised.lower().translate(str.maketrans("āēīōūâêîôû", "aeiouaeiou"))
    text = re.sub(r"[^a-z]", "", text)
    for old, new in (("tsu", "tu"), ("shi", "si"), ("chi", "ti"), ("fu", "hu"), ("ji", "zi"), ("sh", "sy"),
                     ("ch", "ty"), ("j", "zy"), ("oh", "o"), ("ou", "o"), ("oo", "o"), ("uu", "u"),
                     ("aa", "a"), ("ii", "i"), ("ee", "e"), ("nn", "n"), ("mb", "nb"), ("mp", "np")):
        text = text.replace(old, new)
    return text


class Word(NamedTuple):  # a tuple: a long prompt makes hundreds, and a tuple is cheap to build
    surface: str
    lemma: str
    reading: str  # katakana (Japanese words); "" when unknown
    verbal: bool  # a verb, auxiliary, particle or suffix (negation skips back over these)
    proper: bool  # a proper noun, as the segmenter tagged it
    joins: bool = False  # a particle, verb or auxiliary: never part of a name (a suffix may be: 炭治郎)


def _read_table(name: str) -> dict[str, str]:
    """word -> gloss. Glosses repeat (thousands of words mean "dress"): one string object each."""
    table = {}
    with gzip.open(DATA_DIR / name, "rt", encoding="utf-8") as rows:
        for line in rows:
            word, tab, gloss = line.rstrip("\n").partition("\t")
            if tab:
                table[word] = sys.intern(gloss)
    return table


def _unidic_fields(node) -> tuple[str, str, str | None, str | None]:
    """pos1, pos2, lemma, kana of a UniDic node. Split from the raw CSV: fugashi's feature tuple
    costs more than the segmentation itself; a field with a comma in it is quoted, and then the
    tuple is used after all. Unknown words have fewer fields: no lemma, no reading."""
    raw = node.feature_raw
    if '"' in raw:
        feature = node.feature
        return feature.pos1, feature.pos2, feature.lemma, feature.kana
    fields = raw.split(",")
    return (fields[0], fields[1] if len(fields) > 1 else "", fields[7] if len(fields) > 7 else None,
            fields[17] if len(fields) > 17 else None)


@functools.lru_cache(maxsize=PROBE_CACHE_SIZE)
def _japanese_word(surface: str, raw: str) -> Word | None:
    """The Word of a UniDic node from its surface and raw CSV (the same pair always gives the same
    word, and a prompt repeats its particles and nouns), or None when a field this reads is quoted:
    then fugashi's parse of the fields is needed. A quoted field after the kana (the accent's
    "名詞%F1,..." of a particle) does not move the fields read here."""
    fields = raw.split(",", 18)
    if '"' in raw and any('"' in field for field in fields[:18]):
        return None
    pos1 = fields[0]
    lemma = fields[7] if len(fields) > 7 else None
    kana = fields[17] if len(fields) > 17 else None
    return Word(surface, lemma or surface, kana or "", pos1 in VERBAL_POS,
                (fields[1] if len(fields) > 1 else "") == "固有名詞", pos1 in NAME_BREAK_POS)


def _starts_some(keys: list[str], text: str) -> bool:
    """Whether some key in the sorted list starts with text (or is text)."""
    at = bisect.bisect_left(keys, text)
    return at < len(keys) and keys[at].startswith(text)


class Reader:
    """The segmenters, dictionary tables and name index: loaded once per process."""

    def __init__(self, vocabulary: Vocabulary):
        # data/cjk.txt: "WORD = ..." for both languages, "ja:WORD = ..." or "zh:WORD = ..." for one.
        self.hand = {word: gloss for word, gloss in vocabulary.cjk.items() if word[2:3] != ":"}
        self.hand_of = {language: {word[3:]: gloss for word, gloss in vocabulary.cjk.items()
                                   if word.startswith(language + ":")} for language in ("ja", "zh")}
        self.tables = {"ja": _read_table("ja-dict.tsv.gz"), "zh": _read_table("zh-dict.tsv.gz")}
        self.pinyin = _read_table("hanzi-pinyin.tsv.gz")
        # Sorted keys of what a run of words may spell (hand table, dictionary, numerals): a run
        # stops growing as soon as no key starts with it, so a long prompt costs a few lookups a word.
        self.key_order = {language: sorted({*self.hand, *self.hand_of[language], *table, *NUMERALS, *"0123456789"})
                          for language, table in self.tables.items()}
        # "-r /dev/null": no mecabrc needed; the dictionary is the one unidic-lite ships.
        self.tagger = fugashi.Tagger(f"-d {unidic_lite.DICDIR} -r /dev/null")
        # rjieba builds its default segmenter on import; a second one would hold its dictionary
        # (about 25 MB) twice. The hand words go into that one (nothing else here segments Chinese).
        for word in self.hand:
            if len(word) > 1 and HAN.search(word) and not KANA.search(word) and word[2:3] != ":":
                rjieba.add_word(word, 100000, "n")
        self.names = self._index_names(vocabulary)
        self.series_words = {tag: strip_qualifier(series).replace("_", " ")
                             for tag, series in vocabulary.character_series.items()}
        self.series_phrases = frozenset(self.series_words.values())
        self.meaning = functools.lru_cache(maxsize=PROBE_CACHE_SIZE)(self._meaning)
        self.grows = functools.lru_cache(maxsize=PROBE_CACHE_SIZE)(self._grows)
        self.kanji_readings = functools.lru_cache(maxsize=PROBE_CACHE_SIZE)(self._kanji_readings)

    @staticmethod
    def _index_names(vocabulary: Vocabulary) -> dict[str, str]:
        """name_key of each character's name, in its order and the other (family and given name
        swap between languages) -> the character with most posts."""
        index: dict[str, tuple[int, str]] = {}
        for tag in vocabulary.tags.values():
            if tag.category != CHARACTER:
                continue
            parts = [p for p in strip_qualifier(tag.name).split("_") if p]
            for order in (parts, parts[::-1]):
                found = name_key("".join(order))
                if len(found) >= 4 and (found not in index or index[found][0] < tag.post_count):
                    index[found] = (tag.post_count, tag.name)
        return {found: name for found, (_, name) in index.items()}

    # Words -------------------------------------------------------------------------------------

    def words(self, text: str, language: str) -> list[Word]:
        if language == "ja":
            found = []
            for node in self.tagger(text):
                word = _japanese_word(node.surface, node.feature_raw)
                if word is None:
                    pos1, pos2, lemma, kana = _unidic_fields(node)
                    word = Word(node.surface, lemma or node.surface, kana or "", pos1 in VERBAL_POS,
                                pos2 == "固有名詞", pos1 in NAME_BREAK_POS)
                found.append(word)
            return found
        found = []
        for surface, tag in rjieba.tag(text, False):
            if surface[0] in NEGATION_PREFIXES and len(surface) > 1 and self.meaning(surface, language) is None:
                # 没戴, 不戴眼镜, 没穿鞋: the segmenter keeps the negation on its word; the tables know
                # the word without it.
                found.append(Word(surface[0], surface[0], "", False, False, True))
                surface = surface[1:]
            found.append(Word(surface, surface, "", tag in ("uj", "ul", "v", "u"), tag in ("nr", "nrt", "nz", "nrfg"),
                              tag in ("uj", "ul", "u", "p", "c")))
        return found

    def _meaning(self, text: str, language: str) -> str | None:
        """The English of a word or run of words: hand table, counts, then the dictionary."""
        found = self.hand_of[language].get(text)
        if found is None:
            found = self.hand.get(text)
        if found is not None:
            return found
        count = NUMERAL_COUNTER.match(text)
        if count:
            number = count.group(1)
            value = int(number) if number.isdigit() else NUMERALS.get(number)
            return NUMBER_WORDS.get(value, "several") if value else None
        if len(text) > 1:
            return self.tables[language].get(text)
        return None

    def _grows(self, text: str, language: str) -> bool:
        """Whether a longer run of words starting with text may still be in a table (or a count)."""
        return _starts_some(self.key_order[language], text) or NUMERAL_PREFIX.match(text) is not None

    def _kanji_readings(self, text: str) -> tuple[str, ...]:
        """The katakana of each word of a hanzi text, as Japanese would read it."""
        return tuple(node.feature.kana or "" for node in self.tagger(text))

    def romanisations(self, words: list[Word], language: str, *, pinyin_too: bool = False) -> list[str]:
        text = "".join(w.surface for w in words)
        if not all(KANA.match(c) or HAN.match(c) for c in text):
            return []
        found = []
        if language == "ja" or not KANA.search(text):
            readings = [w.reading for w in words] if language == "ja" else \
                self.kanji_readings(text)
            if all(readings):
                found.append(romaji("".join(readings)))
        if (language == "zh" or pinyin_too) and all(c in self.pinyin for c in text):
            found.append("".join(self.pinyin[c] for c in text))
        return found

    def known(self, word: Word, language: str) -> bool:
        return self.meaning(word.surface, language) is not None or self.meaning(word.lemma, language) is not None

    def name_at(self, words: list[Word], start: int, language: str) -> tuple[int, str] | None:
        """The longest run of words from start that romanises to a character's name. A name is
        made of nouns (no particle: 雪の is no Yukino), and one of its words is a proper noun or a
        word no table knows (ordinary words that happen to sound like a name are not one)."""
        first = words[start]
        if first.joins or not (first.proper or not self.known(first, language)):
            return None  # a name starts with a proper noun or a word no table has
        # A name is a run of kana and hanzi with no particle or verb in it: find where that run
        # ends before romanising anything.
        last = start
        while last < min(len(words), start + MAX_NAME_SPAN) and not words[last].joins \
                and NAME_CHARS.fullmatch(words[last].surface):
            last += 1
        for end in range(last, start, -1):
            span = words[start:end]
            if len("".join(w.surface for w in span)) < 2:
                continue
            for romanised in self.romanisations(span, language):
                tag = self.names.get(name_key(romanised))
                if tag:
                    return end, tag
        return None

    def table_at(self, words: list[Word], start: int, language: str) -> tuple[int, str] | None:
        """The longest run of words from start that a table knows, as (end, meaning)."""
        best = None
        text = ""
        for end in range(start + 1, min(len(words), start + MAX_SPAN) + 1):
            text += words[end - 1].surface
            found = self.meaning(text, language)
            if found is None and end == start + 1 and words[start].lemma != words[start].surface:
                found = self.meaning(words[start].lemma, language)  # 座っ -> 座る, 青く -> 青い
            if found is not None:
                best = end, found
            if not self.grows(text, language):
                break
        return best

    def pieces_of(self, surface: str, language: str) -> list[str] | None:
        """A word no table knows, as known words covering all of it (戴帽子 -> 戴, 帽子), or None."""
        if not surface:
            return []
        for length in range(len(surface), 0, -1):
            head = self.meaning(surface[:length], language)
            if head is not None:
                rest = self.pieces_of(surface[length:], language)
                if rest is not None:
                    return [head, *rest]
        return None


_reader: Reader | None = None
_lock = threading.Lock()


def get_reader(vocabulary: Vocabulary) -> Reader:
    global _reader
    if _reader is None:
        with _lock:
            if _reader is None:
                _reader = Reader(vocabulary)
    return _reader


def language_of(text: str) -> str:
    """Kana anywhere makes a prompt Japanese; hanzi alone, Chinese."""
    return "ja" if KANA.search(text) else "zh"


@dataclass
class Piece:
    text: str
    verbal: bool = False
    name: str = ""  # the character tag a romanised name stands for
    soft: bool = False  # a break made by 的, not by punctuation
    # The words of an everyday word that may also be a character's name (胡桃: walnut or Hu Tao),
    # read as the name only when the prompt names that character's series.
    candidate: tuple = ()


def gloss(text: str, vocabulary: Vocabulary) -> str:
    reader = get_reader(vocabulary)
    language = language_of(text)
    text = text.translate(KANJI_VARIANTS) if language == "ja" else text
    pieces: list[Piece] = []
    position = 0
    # A run written twice (Chinese clauses between commas repeat: "风，花瓣，风") is glossed once;
    # its pieces are copied, since the name rules below rewrite them in place.
    glossed: dict[str, list[Piece]] = {}
    for run in CJK_RUN.finditer(text):
        pieces.append(Piece(text[position:run.start()]))
        words = run.group()
        if words not in glossed:
            glossed[words] = _gloss_run(words, language, reader)
        pieces.extend(Piece(p.text, p.verbal, p.name, p.soft, p.candidate) for p in glossed[words])
        position = run.end()
    pieces.append(Piece(text[position:]))
    english = " ".join(p.text for p in pieces)
    # A name whose meaning-reading ties with a word (胡桃 Hu Tao or walnut) was kept as the word
    # unless the prompt names the character's series.
    lowered = english.lower()
    for piece in pieces:
        if piece.name and piece.text.startswith("\0"):
            series = reader.series_words.get(piece.name, "")
            piece.text = _name_text(piece.name) if series and series in lowered else piece.text[1:]
    named_series = {piece.text.strip().lower() for piece in pieces} & reader.series_phrases
    if named_series:
        for piece in pieces:
            if piece.candidate:
                _read_as_name(piece, named_series, language, reader)
    return " ".join(p.text for p in pieces)


def _read_as_name(piece: Piece, named_series: set[str], language: str, reader: Reader):
    """An everyday word that romanises (by its reading, or in pinyin: Chinese characters keep their
    hanzi in Japanese prompts too) to a character of a series the prompt names is that character."""
    for romanised in reader.romanisations(list(piece.candidate), language, pinyin_too=True):
        tag = reader.names.get(name_key(romanised))
        if tag and reader.series_words.get(tag) in named_series:
            piece.text, piece.name = _name_text(tag), tag
            return


def _name_text(tag: str) -> str:
    return " " + " ".join(w.capitalize() for w in strip_qualifier(tag).split("_")) + " "


def _gloss_run(run: str, language: str, reader: Reader) -> list[Piece]:
    words = reader.words(run, language)
    if language != "ja":
        return _gloss_words(words, language, reader)
    # A Japanese run goes on across 、 and 。: segmented whole, then glossed a clause at a time, and a
    # clause written twice is glossed once. Nothing reads across the clause's comma (no table entry
    # has 、 or 。 in it, negation, plurals and counts stop at the comma, a name has no comma in it),
    # so this is the gloss of the whole run.
    pieces: list[Piece] = []
    glossed: dict[tuple[Word, ...], list[Piece]] = {}
    start = 0
    for end, word in enumerate(words, 1):
        if word.surface in JAPANESE_CLAUSE_MARKS or end == len(words):
            clause = tuple(words[start:end])
            if clause not in glossed:
                glossed[clause] = _gloss_words(list(clause), language, reader)
            pieces.extend(Piece(p.text, p.verbal, p.name, p.soft, p.candidate) for p in glossed[clause])
            start = end
    return pieces


def _gloss_words(words: list[Word], language: str, reader: Reader) -> list[Piece]:
    pieces: list[Piece] = []
    index = 0
    while index < len(words):
        word = words[index]
        if language == "zh" and word.surface in MODIFIER_MARKS:
            # "穿着围裙做饭的妈妈": what comes before 的 describes the noun after it; a break keeps
            # "cooking" from taking "mother" as its object. A colour stays with its noun (黑色的头发).
            if _last_word(pieces) not in COLOUR_WORDS:
                pieces.append(Piece(", ", soft=True))
            index += 1
            continue
        table = reader.table_at(words, index, language)
        name = reader.name_at(words, index, language)
        table_chars = len("".join(w.surface for w in words[index:table[0]])) if table else 0
        name_chars = len("".join(w.surface for w in words[index:name[0]])) if name else 0
        if name and name_chars > table_chars:
            pieces.append(Piece(_name_text(name[1]), name=name[1]))
            index = name[0]
            continue
        if table:
            end, meaning = table
            if name and name_chars == table_chars:
                # Decided once the whole prompt is read (see gloss): "\0" marks the word's gloss.
                pieces.append(Piece("\0" + f" {meaning} ", name=name[1], candidate=tuple(words[index:end])))
            else:
                before = len(pieces)
                _add(pieces, meaning, verbal=all(w.verbal for w in words[index:end]))
                span = words[index:end]
                if len(pieces) > before and not meaning.startswith("!") and not any(w.joins for w in span) \
                        and 2 <= len(run_text := "".join(w.surface for w in span)) <= MAX_CANDIDATE_CHARS \
                        and NAME_CHARS.fullmatch(run_text):
                    pieces[-1].candidate = tuple(span)
            index = end
            continue
        word = words[index]
        parts = reader.pieces_of(word.surface, language) if len(word.surface) > 1 else None
        for meaning in parts or ():
            _add(pieces, meaning, verbal=word.verbal)
        index += 1
    for piece in pieces:
        if piece.text == HAND_ON_NEXT:  # nothing followed the hand
            piece.text = " "
    return _counts_before_nouns(pieces)


def _counts_before_nouns(pieces: list[Piece]) -> list[Piece]:
    """"两个穿水手服的女孩" (two, wearing a sailor suit, girl): a count joins the person noun it
    counts, across the words that describe that person, up to the end of the clause."""
    for index, piece in enumerate(pieces):
        if piece.text.strip() not in NUMBER_WORDS.values():
            continue
        for later in range(index + 1, len(pieces)):
            text = pieces[later].text.strip()
            if text == "," and not pieces[later].soft:
                break
            if text.split()[-1:] and text.split()[-1] in PERSON_WORDS:
                if later > index + 1:
                    pieces[later].text = f" {piece.text.strip()} {text} "
                    piece.text = " "
                break
    return pieces


def _add(pieces: list[Piece], meaning: str, *, verbal: bool):
    if meaning == JOINER:
        pieces.append(Piece(" ", verbal=True))
    elif meaning == CLAUSE_BREAK:
        pieces.append(Piece(", "))
    elif meaning == NEGATE_PREVIOUS:
        # Japanese negates after the noun: 眼鏡なし, 帽子をかぶっていない (hat, wear, not): the
        # negation reaches back over the verbs and particles to the noun.
        verbs = []
        for index in range(len(pieces) - 1, -1, -1):
            piece = pieces[index]
            if piece.text.strip() == ",":
                break
            if not piece.text.strip() or piece.verbal:
                verbs.append(index)
                continue
            piece.text = f" no {piece.text.strip()} "
            for verb in verbs:
                pieces[verb].text = " "
            break
    elif meaning == PLURAL_PREVIOUS:
        # 女の子たち, 骑士们: several of the noun before; a name stays a name (炭治郎たち).
        for piece in reversed(pieces):
            word = piece.text.strip()
            if word:
                if not piece.name and not piece.verbal and word not in (",", "no") and not word.startswith("no "):
                    piece.text = f" several {plural(word)} "
                break
    elif meaning == HAND_ON_PREVIOUS:
        # 頬に手を当てる: the part of the body named before the hand.
        for piece in reversed(pieces):
            word = piece.text.strip()
            if word == ",":
                break
            if word and not piece.verbal:
                if word in BODY_PARTS:
                    piece.text = f" hand on own {word} "
                break
    elif meaning == HAND_ON_NEXT:
        pieces.append(Piece(HAND_ON_NEXT))
    elif meaning.strip() in NUMBER_WORDS.values() and pieces and _last_word(pieces) in PERSON_WORDS:
        # 女の子四人: the count follows its noun; English wants it before.
        for piece in reversed(pieces):
            if piece.text.strip():
                piece.text = f" {meaning.strip()} {piece.text.strip()} "
                break
    elif pieces and pieces[-1].text == HAND_ON_NEXT:
        # 用手托着脸颊: a hand on the part of the body named next; anything else is held (托着盘子).
        pieces[-1].text = f" hand on own {meaning} " if meaning in BODY_PARTS else f" holding {meaning} "
    else:
        pieces.append(Piece(f" {meaning} ", verbal=verbal))


def plural(words: str) -> str:
    """"girl" -> "girls", "long hair girl" -> "long hair girls", "child" -> "children"."""
    *before, last = words.split(" ")
    if last in IRREGULAR_PLURAL_OF:
        last = IRREGULAR_PLURAL_OF[last]
    elif not last.endswith("s"):
        last = last + ("es" if last.endswith(("x", "ch", "sh")) else "s")
    return " ".join([*before, last])


def _last_word(pieces: list[Piece]) -> str:
    for piece in reversed(pieces):
        if piece.text.strip():
            return piece.text.strip()
    return ""
