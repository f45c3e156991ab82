"""The enhancer's rules, one table of cases per rule and language (issue 17): words inside longer
words, counts, negations, names in native script, word senses, subject-less poses, and
enrichment that never changes the count or the rating."""

import pytest

from generation.enhance import lexicon, offline
from generation.enhance.cjk import name_key, romaji
from generation.enhance.senses import disambiguate
from generation.enhance.vocabulary import DATA_DIR, GENERAL, get_vocabulary


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


ENRICHED_PROMPTS = ["anime girl with blue hair, magical forest", "两个女孩在森林里", "森の中の二人の男の子",
                    "a knight and a dragon, castle", "beach at sunset, nobody", "夜の街、雨、女の子たち",
                    "图书馆里看书的少年", "cyberpunk city at night", "桜の下の巫女"]


@pytest.mark.parametrize("prompt", ENRICHED_PROMPTS)
def test_enrichment_never_changes_count_characters_or_rating(prompt, monkeypatch):
    vocabulary = get_vocabulary()
    enriched = offline.analyse(prompt, vocabulary)
    monkeypatch.setattr(vocabulary, "enrichments", ())
    plain = offline.analyse(prompt, vocabulary)
    assert (enriched.counts, enriched.characters, enriched.series, enriched.rating, enriched.negated) == \
        (plain.counts, plain.characters, plain.series, plain.rating, plain.negated)
    assert set(plain.general) <= set(enriched.general)
    assert not {t for t in enriched.general if t in vocabulary.explicit}


def test_enrichment_adds_scenery_the_prompt_asks_for():
    check("anime girl with blue hair, magical forest", ["1girl", "blue_hair", "forest", "fantasy", "nature", "tree"],
          ["2girls", "no_humans"])
    check("no trees, a forest of crystals", [], ["tree"])  # a negated tag is never added back


def test_every_enrichment_adds_only_scenery_light_and_atmosphere():
    vocabulary = get_vocabulary()
    text = (DATA_DIR / "enrich.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if "=>" in line and not line.startswith("#")]
    assert len(lines) == len(vocabulary.enrichments)
    for line, relation in zip(lines, vocabulary.enrichments):
        assert len(relation.adds) == len(line.split("=>")[1].split(",")), f"not a tag in: {line}"
        for tag in relation.adds:
            assert vocabulary.category(tag) == GENERAL, tag  # no character, series or meta tag
            assert not offline.COUNT_TAG.match(tag) and tag not in vocabulary.explicit, tag
            assert tag not in lexicon.PERSON_CUE_TAGS and not tag.endswith(lexicon.PERSON_CUE_SUFFIXES), tag
            assert tag not in lexicon.ANIMAL_TAGS and tag not in lexicon.POSE_TAGS, tag


# Plural markers without a number: several of the noun, never solo.
PLURAL_MARKERS = [
    ("女の子たちが桜の下でお花見", ["multiple_girls", "cherry_blossoms"], ["solo", "1girl"]),
    ("子供たちが雪遊びをしている", ["snow"], ["solo"]),
    ("女孩们在海边玩水", ["multiple_girls", "beach"], ["solo", "1girl"]),
    ("騎士們在黎明時出發", ["dawn"], ["solo"]),
    ("the children are playing in the snow", ["snow"], ["solo"]),
    ("the girls are singing on stage", ["multiple_girls", "singing"], ["solo", "1girl"]),
]


@pytest.mark.parametrize("prompt,must,must_not", PLURAL_MARKERS)
def test_plural_markers(prompt, must, must_not):
    check(prompt, must, must_not)


# A negation the segmenter leaves on its word, a hand on the body, an animal held.
NEGATION_HANDS_ANIMALS = [
    ("没戴帽子的男孩，蓝色外套", ["1boy"], ["hat"]),
    ("不戴眼镜的少年，白衬衫", ["1boy", "white_shirt"], ["glasses"]),
    ("头发遮住一只眼睛，没穿鞋", ["hair_over_one_eye"], ["shoes"]),
    ("頬に手を当てて微笑む少女", ["1girl", "hand_on_own_cheek", "smile"], []),
    ("用手托着脸颊的少女", ["1girl", "hand_on_own_cheek"], []),
    ("托着盘子的女仆", ["maid", "tray", "holding_tray"], ["hand_on_own_cheek"]),
    ("a girl with her hand on her cheek", ["hand_on_own_cheek"], []),
    ("子猫を抱いている少女", ["holding_animal", "cat"], ["hug"]),
    ("抱着小狗的男孩", ["holding_animal", "dog", "1boy"], []),
    ("a boy holding a fox", ["holding_animal", "fox"], []),
]


@pytest.mark.parametrize("prompt,must,must_not", NEGATION_HANDS_ANIMALS)
def test_negation_hands_and_animals(prompt, must, must_not):
    check(prompt, must, must_not)


# An everyday word that is also a name is the character when its series is named; variant kanji.
NAMES_AND_WORDS = [
    ("原神の胡桃、ツインテール", ["hu_tao_(genshin_impact)", "genshin_impact"], ["walnut"]),
    ("原神胡桃，双马尾，微笑", ["hu_tao_(genshin_impact)", "twintails"], ["walnut"]),
    ("胡桃のケーキ", [], ["hu_tao_(genshin_impact)"]),
    ("竈門禰豆子が走っている", ["kamado_nezuko", "running"], []),
    ("竈門祢豆子、夕方", ["kamado_nezuko"], []),
]


@pytest.mark.parametrize("prompt,must,must_not", NAMES_AND_WORDS)
def test_names_and_everyday_words(prompt, must, must_not):
    check(prompt, must, must_not)


# Words of one language only, participles that are not their noun, dawn.
SENSES_AND_KINDS = [
    ("鬼の少女、赤い角", ["oni", "1girl", "red_horns"], ["ghost"]),
    ("鬼娘，红色的角", ["oni", "1girl"], []),
    ("一个鬼在走廊里", ["ghost"], ["oni"]),
    ("winding mountain road at dawn, no people", ["road", "dawn", "no_humans"], ["wind"]),
    ("a bowing maid", ["bowing", "maid"], ["bow"]),
    ("strong wind, leaves flying", ["wind", "leaf"], []),
    ("夜明けの海辺", ["dawn"], []),
    ("黎明时的城市，没有人", ["dawn", "city", "no_humans"], []),
    ("袴姿の剣士、黒いマント", ["hakama", "black_cape"], []),
    ("穿袴的武士，黑色披风", ["hakama", "cape"], []),
    ("五人の少女がカフェで話している", ["5girls", "cafe"], ["solo"]),
    ("五个女孩在咖啡馆聊天", ["5girls", "cafe"], ["solo"]),
]


@pytest.mark.parametrize("prompt,must,must_not", SENSES_AND_KINDS)
def test_senses_and_kinds(prompt, must, must_not):
    check(prompt, must, must_not)


def test_deterministic_across_calls():
    prompts = ["初音ミクがステージで歌っている", "雨中撑伞的女孩，穿着校服", "a seal on the beach"]
    assert [tags_of(p) for p in prompts] == [tags_of(p) for p in prompts]
