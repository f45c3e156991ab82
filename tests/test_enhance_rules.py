"""The enhancer's rules, one table of cases per rule and language (issue 17): words inside longer
words, counts, negations, names in native script, word senses, subject-less poses, and
enrichment that never changes the count or the rating."""

import pytest

from generation.enhance import offline
from generation.enhance.cjk import name_key, romaji
from generation.enhance.senses import disambiguate
from generation.enhance.vocabulary import get_vocabulary


def tags_of(prompt: str) -> set[str]:
    vocabulary = get_vocabulary()
    analysis = offline.analyse(prompt, vocabulary)
    found = set(analysis.counts) | set(analysis.characters) | set(analysis.series) | set(analysis.general)
    return found | {vocabulary.aliases[t] for t in found if t in vocabulary.aliases}


def check(prompt, must, must_not):
    got = tags_of(prompt)
    assert set(must) <= got, f"{prompt}: missing {set(must) - got} in {sorted(got)}"
    assert not set(must_not) & got, f"{prompt}: should not have {set(must_not) & got}"


# A character that is a tag alone does not fire inside a longer word.
WORDS_NOT_CHARACTERS = [
    ("花嫁が微笑んでいる", ["bride"], ["flower"]),
    ("画风：像素风，一个骑士", ["pixel_art", "knight"], ["wind"]),
    ("角度从下方，高楼大厦", ["from_below"], ["horns", "single_horn"]),
    ("雪菜ちゃんが笑っている", [], ["snow"]),
    ("海老フライを食べる", [], ["ocean"]),
]
COUNTS = [
    ("三人の少女がバス停のベンチに座っている", ["3girls", "multiple_girls", "bench"], ["solo"]),
    ("女の子二人、セーラー服、屋上", ["2girls", "serafuku", "rooftop"], ["solo"]),
    ("两个穿水手服的女孩在天台上", ["2girls", "serafuku", "rooftop"], ["solo", "1girl"]),
    ("五个男生在踢足球", ["5boys", "multiple_boys"], ["solo"]),
    ("three boys on a rooftop", ["3boys", "multiple_boys"], ["solo"]),
]
NEGATIONS = [
    ("マフラーなし、黒いコートの男性", ["1boy", "black_coat"], ["scarf"]),
    ("帽子をかぶっていない少女", ["1girl"], ["hat"]),
    ("不戴围巾，穿黑色外套的男人", ["1boy", "black_coat"], ["scarf"]),
    ("没有眼镜的女孩", ["1girl"], ["glasses"]),
    ("a boy without glasses", ["1boy"], ["glasses"]),
]
NAMES = [
    ("竈門炭治郎が刀を持っている", ["kamado_tanjirou", "1boy"], ["1girl"]),
    ("博麗霊夢、神社", ["hakurei_reimu", "shrine"], []),
    ("レムがメイド服を着ている", ["rem_(re:zero)", "maid"], []),
    ("纳西妲，原神，白发", ["nahida_(genshin_impact)", "genshin_impact", "white_hair"], []),
    ("钟离，原神", ["zhongli_(genshin_impact)"], []),  # pinyin
    ("五条悟，白发", ["gojou_satoru"], []),  # the Japanese reading of the kanji
    ("雪の中を歩く狐、人物なし", ["fox", "snow", "no_humans"], ["1girl"]),  # 雪の is no Yukino
]
SENSES = [
    ("a girl feeding a seal at the aquarium", ["seal_(animal)"], ["wax_seal"]),
    ("a letter closed with a red seal", ["wax_seal", "letter"], ["seal_(animal)"]),
    ("a bat hanging in a cave", ["bat_(animal)"], ["baseball_bat"]),
    ("baseball player swinging a bat", ["baseball_bat"], ["bat_(animal)"]),
    ("a pitcher of lemonade", ["pitcher_(container)"], []),
    ("the pitcher on the mound throwing a pitch", [], ["pitcher_(container)"]),
    ("a wooden chest full of gold coins", ["treasure_chest"], []),
    ("gamer at his desk with a keyboard and mouse", ["computer_mouse"], ["mouse_(animal)"]),
]
POSES = [
    ("sitting on a bench", ["sitting", "bench"], ["no_humans"]),
    ("ベンチに座っている", ["sitting", "bench"], ["no_humans"]),
    ("坐在长椅上", ["sitting", "bench"], ["no_humans"]),
    ("a cat sleeping on a windowsill", ["cat", "sleeping"], ["1girl", "1boy"]),
]


@pytest.mark.parametrize("prompt,must,must_not",
                         WORDS_NOT_CHARACTERS + COUNTS + NEGATIONS + NAMES + SENSES + POSES)
def test_rule_table(prompt, must, must_not):
    check(prompt, must, must_not)


@pytest.mark.parametrize("kana,expected", [("キリサメ", "kirisame"), ("ゴジョウ", "gojou"), ("マッチャ", "matcha"),
                                           ("ジョウ", "jou"), ("チルノ", "chiruno"), ("ティー", "tii")])
def test_romaji(kana, expected):
    assert romaji(kana) == expected


def test_name_key_folds_spelling_variants():
    assert name_key("Gojou Satoru") == name_key("gojo satoru") == name_key("Gojō Satoru") == name_key("Gojoh Satoru")
    assert name_key("Tsukasa") == name_key("tukasa")


def test_settled_phrases_keep_their_sense():
    assert disambiguate("a baseball bat in a cave") == "a baseball bat in a cave"
    assert disambiguate("player swinging a bat") == "player swinging a baseball bat"


@pytest.mark.parametrize("prompt", ["anime girl with blue hair, magical forest", "两个女孩在森林里",
                                    "森の中の二人の男の子", "a knight and a dragon, castle"])
def test_enrichment_never_changes_count_or_rating(prompt):
    vocabulary = get_vocabulary()
    analysis = offline.analyse(prompt, vocabulary)
    base = offline.count_tags(offline.People(), [], [], vocabulary)  # nothing added from nothing
    assert base == []
    added = set(offline.add_related(list(analysis.general), vocabulary, also_present=analysis.characters)) \
        - set(analysis.general)
    assert not {t for t in added if offline.COUNT_TAG.match(t)}
    assert not {t for t in added if t in vocabulary.explicit}


def test_deterministic_across_calls():
    prompts = ["初音ミクがステージで歌っている", "雨中撑伞的女孩，穿着校服", "a seal on the beach"]
    assert [tags_of(p) for p in prompts] == [tags_of(p) for p in prompts]
