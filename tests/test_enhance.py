import gzip
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from generation.enhance import enhance_prompt, negative_prompt
from generation.enhance.styles import FAMILIES
from generation.enhance.vocabulary import DATA_DIR, get_vocabulary, normalize_tag

REPO = Path(__file__).resolve().parent.parent
NOT_CONTENT = {"masterpiece", "best_quality", "high_score", "great_score", "absurdres", "highres", "newest",
               "safe", "sensitive", "nsfw", "explicit"}


@pytest.fixture(autouse=True)
def offline_only(settings):
    settings.ENHANCE_LLM_URL = ""
    settings.ENHANCE_STYLE = "animagine4"


def tags_of(prompt, **kwargs):
    """The enhanced prompt's tags in Danbooru spelling, quality and rating tokens left out."""
    enhanced = enhance_prompt(prompt, allow_nsfw=kwargs.pop("allow_nsfw", True), **kwargs)
    tags = [normalize_tag(t) for t in enhanced.prompt.split(",")]
    return [t for t in tags if t not in NOT_CONTENT]


def test_count_tags_follow_the_people_named():
    assert tags_of("a girl reading a book")[:2] == ["1girl", "solo"]
    assert tags_of("two boys fighting with swords")[:2] == ["2boys", "multiple_boys"]
    assert tags_of("four girls at the beach")[:2] == ["4girls", "multiple_girls"]
    assert tags_of("seven girls dancing")[:2] == ["6+girls", "multiple_girls"]
    assert tags_of("a group of girls singing")[0] == "multiple_girls"
    couple = tags_of("a boy and a girl walking together")
    assert "1boy" in couple and "1girl" in couple and "solo" not in couple


def test_repeated_mentions_are_the_same_person():
    assert tags_of("girl with blue hair, girl smiling")[:2] == ["1girl", "solo"]
    assert tags_of("a girl and a girl")[:2] == ["2girls", "multiple_girls"]
    assert tags_of("a girl, 1boy, holding hands")[:2] == ["1boy", "1girl"]


def test_unreadable_prompts_get_no_tags_at_all():
    for prompt in ("", "!!!", "asdf qwerty zxcv"):
        assert enhance_prompt(prompt, allow_nsfw=True, style="none").prompt == ""


def test_no_humans_for_scenery_and_animals():
    assert tags_of("a dragon flying over mountains at sunrise")[0] == "no_humans"
    assert tags_of("two cats and a dog in a garden")[0] == "no_humans"
    assert tags_of("steampunk airship above the clouds, no people")[0] == "no_humans"
    assert not {"1girl", "1boy", "solo"} & set(tags_of("an empty classroom at sunset"))


def test_a_person_implied_by_hair_and_a_smile_is_counted():
    assert tags_of("long blue hair, smiling, school uniform")[:2] == ["1girl", "solo"]
    assert tags_of("a knight with her sword")[:2] == ["1girl", "solo"]


def test_colour_and_noun_compounds():
    assert {"long_hair", "grey_hair", "purple_eyes"} <= set(tags_of("a girl with long silver hair and purple eyes"))
    assert {"green_scarf", "scarf"} <= set(tags_of("a girl wearing a green scarf"))
    dress = tags_of("pink and white frilly dress")
    assert {"pink_dress", "white_dress", "frilled_dress"} <= set(dress)
    assert {"short_hair", "black_hair"} <= set(tags_of("a boy with short black hair"))
    assert "shorts" not in tags_of("a boy with short black hair")


def test_negations_never_emit_the_tag_and_go_to_the_negative_prompt():
    enhanced = enhance_prompt("a boy without glasses, short black hair", allow_nsfw=True)
    assert "glasses" not in tags_of("a boy without glasses, short black hair")
    assert enhanced.negative_prompt.startswith("glasses, ")
    ribbon = tags_of("girl with blonde hair but no ribbon, blue dress")
    assert not {"ribbon", "hair_ribbon", "no_ribbon"} & set(ribbon)
    assert "blonde_hair" in ribbon and "blue_dress" in ribbon
    assert "hat" not in tags_of("a girl without a hat") and "witch_hat" not in tags_of("a witch, no hat")
    assert "smile" not in tags_of("a girl, not smiling, expressionless")
    assert "1girl" not in tags_of("a quiet street at night, no girls")


def test_characters_bring_their_series_and_gender():
    assert tags_of("Hatsune Miku singing")[:4] == ["1girl", "solo", "hatsune_miku", "vocaloid"]
    assert tags_of("Naruto eating ramen")[:4] == ["1boy", "solo", "uzumaki_naruto", "naruto_(series)"]
    rem = tags_of("Rem from Re:Zero in a maid outfit")
    assert {"rem_(re:zero)", "re:zero_kara_hajimeru_isekai_seikatsu", "1girl", "maid"} <= set(rem)
    assert {"artoria_pendragon_(fate)", "fate_(series)"} <= set(tags_of("Saber from Fate holding Excalibur"))
    assert "1boy" not in tags_of("Makima from Chainsaw Man smiling")


def test_names_that_are_ordinary_words_need_a_safe_context():
    assert "link" not in tags_of("a chain link fence in the rain")
    assert "bleach" not in tags_of("a bottle of bleach on a shelf")
    assert "chen" not in tags_of("chen, a quiet village")
    assert "quiet_(metal_gear)" not in tags_of("watercolor painting of a quiet village")
    assert "link" in tags_of("Link from Zelda holding a sword")
    assert "bleach" in tags_of("Ichigo from Bleach")


def test_aliases_that_are_ordinary_words_do_not_misfire():
    assert "male_focus" not in tags_of("a man reading")
    assert "comic" not in tags_of("a boy reading a manga")
    assert "from_side" not in tags_of("a girl with a side ponytail")
    assert "side_ponytail" in tags_of("a girl with a side ponytail")
    assert "necktie" not in tags_of("a man with a tie dye shirt")
    assert "necktie" in tags_of("a man in a suit and tie")


def test_actions_and_objects_make_compound_tags():
    assert {"holding_phone", "smartphone"} <= set(tags_of("a girl holding a smartphone"))
    assert {"holding_sword", "katana"} <= set(tags_of("a samurai holding a katana"))
    assert {"playing_instrument", "guitar"} <= set(tags_of("girl playing the guitar"))
    assert "flower_field" in tags_of("standing in a field of flowers")
    assert "multiple_tails" in tags_of("a fox with nine tails")


def test_already_tagged_input_keeps_its_tags_and_order():
    assert tags_of("1boy, solo, blue_eyes, spiky_hair, jacket, upper_body") == [
        "1boy", "solo", "blue_eyes", "spiked_hair", "jacket", "upper_body"]
    prompt = enhance_prompt("masterpiece, best quality, 2girls, yuri, hug", allow_nsfw=True).prompt
    assert prompt.count("masterpiece") == 1
    assert tags_of("(blue_hair:1.2), 1girl")[:2] == ["1girl", "blue_hair"]


def test_japanese_and_chinese_prompts():
    assert {"1boy", "grey_hair", "katana", "holding_sword", "night"} <= set(tags_of("銀髪の少年、刀を持っている、夜"))
    assert {"1girl", "beach", "straw_hat"} <= set(tags_of("海辺で麦わら帽子をかぶった女の子"))
    assert {"1boy", "glasses", "library", "reading", "book"} <= set(tags_of("一个戴眼镜的男孩在图书馆看书"))
    assert {"2girls", "rain", "umbrella"} <= set(tags_of("两个女孩在雨中撑伞"))
    assert "glasses" not in tags_of("眼鏡なしの女の子")


@pytest.mark.parametrize("style", sorted(FAMILIES))
def test_each_style_places_its_quality_tags(style):
    prompt = enhance_prompt("a girl with blue hair", allow_nsfw=True, style=style).prompt
    family = FAMILIES[style]
    assert prompt.startswith(", ".join(family.prefix) if family.prefix else "1girl")
    if family.suffix:
        assert prompt.endswith(", ".join(family.suffix))
    assert "blue_hair" in prompt


def test_animagine_rating_follows_the_series_and_noobai_rating_follows_its_prefix():
    animagine = enhance_prompt("Hatsune Miku", allow_nsfw=False, style="animagine4").prompt
    assert animagine.startswith("1girl, solo, hatsune_miku, vocaloid, safe, ")
    noobai = enhance_prompt("Hatsune Miku", allow_nsfw=False, style="noobai").prompt
    assert noobai.startswith("masterpiece, best quality, newest, absurdres, highres, safe, 1girl")


def test_the_default_style_comes_from_settings(settings):
    settings.ENHANCE_STYLE = "none"
    assert enhance_prompt("a girl with blue hair", allow_nsfw=True).prompt == "1girl, solo, blue_hair"
    settings.ENHANCE_STYLE = "sdxl-anything"
    with pytest.raises(ImproperlyConfigured):
        enhance_prompt("a girl", allow_nsfw=True)


def test_no_explicit_tags_when_nsfw_is_not_allowed():
    safe = enhance_prompt("nude girl, nipples, sex on a bed", allow_nsfw=False)
    tags = [normalize_tag(t) for t in safe.prompt.split(",")]
    vocabulary = get_vocabulary()
    assert not [t for t in tags if t in vocabulary.explicit]
    assert "safe" in tags and "bed" in tags
    assert "nsfw" in safe.negative_prompt.split(", ") and "nude" in safe.negative_prompt.split(", ")
    allowed = enhance_prompt("nude girl on a bed", allow_nsfw=True)
    assert "nude" in tags_of("nude girl on a bed") and "nsfw" not in allowed.negative_prompt


def test_negative_prompt_for_unenhanced_prompts():
    assert "nsfw" in negative_prompt(allow_nsfw=False).split(", ")
    assert "nsfw" not in negative_prompt(allow_nsfw=True).split(", ")
    assert negative_prompt(allow_nsfw=True, style="noobai").startswith("worst quality, old, early")
    assert negative_prompt(allow_nsfw=True, style="none") == ""


def test_parentheses_are_escaped_for_prompt_weighting():
    prompt = enhance_prompt("Rem from Re:Zero", allow_nsfw=True).prompt
    assert "rem_\\(re:zero\\)" in prompt


def test_only_real_tags_are_emitted():
    vocabulary = get_vocabulary()
    prompts = ["anime girl with blue hair, magical forest, soft lighting, trees",
               "a cyberpunk city with flying cars and holograms, cinematic, 8k",
               "cute, kawaii, beautiful girl, masterpiece, ultra detailed"]
    for prompt in prompts:
        assert all(vocabulary.resolve(t) == t for t in tags_of(prompt)), prompt
    assert {"magic", "forest", "tree"} <= set(tags_of(prompts[0]))


def test_enhancement_is_deterministic_and_thread_safe():
    lines = (REPO / "tests/data/enhance-cases.jsonl").read_text(encoding="utf-8").splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines]
    first = [enhance_prompt(p, allow_nsfw=False).prompt for p in prompts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        again = list(pool.map(lambda p: enhance_prompt(p, allow_nsfw=False).prompt, prompts * 4))
    assert again == first * 4


def test_vocabulary_loads_on_first_use_not_at_import():
    code = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
            "import generation.enhance, generation.enhance.vocabulary as v; print(v._vocabulary is None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_hand_written_tables_name_only_real_tags():
    vocabulary = get_vocabulary()
    for line in (DATA_DIR / "phrases.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            _, _, targets = line.partition(" = ")
            for tag in (t.strip() for t in targets.split(",")):
                assert tag == "-" or tag in vocabulary.tags, f"phrases.txt: {line}"
    for relation in vocabulary.relations:
        for tag in relation.requires + relation.adds:
            assert tag in vocabulary.tags, f"related.txt: {relation}"
    for tag, (series, gender) in vocabulary.character_facts.items():
        assert vocabulary.category(tag) == 4, f"characters.txt: {tag} is not a character"
        assert not series or vocabulary.category(series) == 3, f"characters.txt: {series} is not a series"
        assert gender in ("f", "m", "o", "c"), f"characters.txt: {tag}"
    for _, tag in vocabulary.hand_name_list:
        assert tag in vocabulary.character_facts, f"characters.txt: = ... {tag} has no facts"


def test_shipped_vocabulary_is_compact():
    path = DATA_DIR / "vocabulary.tsv.gz"
    assert path.stat().st_size < 3_000_000
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = sum(1 for _ in handle)
    assert 20_000 <= rows <= 80_000


def score(cases_file):
    """validity, recall, violations over a labelled file, as ../shared/tools/score-enhancer counts them."""
    vocabulary = get_vocabulary()
    cases = [json.loads(line) for line in cases_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    emitted = valid = hit = must = 0
    violations = []
    for case in cases:
        tags = tags_of(case["prompt"])
        emitted += len(tags)
        valid += sum(vocabulary.resolve(t) is not None for t in tags)
        hit += sum(m in tags for m in case["must"])
        must += len(case["must"])
        violations += [(case["prompt"], n) for n in case["must_not"] if n in tags]
    return valid / emitted, hit / must, violations


@pytest.mark.parametrize("cases_file", ["enhance-cases.jsonl", "enhance-fresh.jsonl", "enhance-probe.jsonl"])
def test_held_out_prompts_score_above_the_goals(cases_file):
    validity, recall, violations = score(REPO / "tests" / "data" / cases_file)
    assert validity >= 0.99
    assert recall >= 0.95
    assert violations == []


def test_build_vocabulary_keeps_what_matters_and_is_reproducible(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_vocabulary
    finally:
        sys.path.remove(str(REPO / "scripts"))
    source = tmp_path / "tags.csv"
    source.write_text(
        'blue_hair,0,855605,"/bh,bluehair"\n'
        "rare_thing,0,30,\n"
        're:zero_kara_hajimeru_isekai_seikatsu,3,16703,"re:zero,re_zero"\n'
        "tiny_series,3,12,\n"
        "rem_(re:zero),4,9053,\n"
        "obscure_character,4,50,\n"
        "some_artist,1,100,\n"
        "oil_painting_(medium),5,1019,oil_painting\n", encoding="utf-8")
    first, second = tmp_path / "a.tsv.gz", tmp_path / "b.tsv.gz"
    build_vocabulary.main(["--source", str(source), "--output", str(first)])
    build_vocabulary.main(["--source", str(source), "--output", str(second)])
    assert first.read_bytes() == second.read_bytes()
    rows = [line.split("\t") for line in gzip.decompress(first.read_bytes()).decode().splitlines()]
    assert rows == [
        ["blue_hair", "0", "855605", "bluehair", ""],
        ["re:zero_kara_hajimeru_isekai_seikatsu", "3", "16703", "re:zero,re_zero", ""],
        ["rem_(re:zero)", "4", "9053", "", "re:zero_kara_hajimeru_isekai_seikatsu"],
        ["oil_painting_(medium)", "5", "1019", "oil_painting", ""],
        ["rare_thing", "0", "30", "", ""],
    ]
