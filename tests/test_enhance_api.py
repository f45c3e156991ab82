from decimal import Decimal
from http import HTTPStatus

import pytest

from billing import ledger
from generation.models import Generation


@pytest.fixture(autouse=True)
def offline_enhancer(settings):
    settings.ENHANCE_LLM_URL = ""
    settings.ENHANCE_STYLE = "animagine4"


def enhance(client, key, body):
    return client.post("/api/enhance", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def tags(client, key, query):
    return client.get(f"/api/tags{query}", HTTP_AUTHORIZATION=f"Bearer {key}")


@pytest.mark.django_db
def test_enhance_answers_the_prompt_and_its_negative_without_charging(client, alice, alice_key):
    response = enhance(client, alice_key, {"prompt": "anime girl with blue hair, magical forest"})
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        # The reference's example: the forest is enriched with scenery and light (data/enrich.txt).
        "enhanced_prompt": "1girl, solo, blue_hair, magic, forest, fantasy, glowing, light_particles, nature, tree, "
                           "outdoors, newest, masterpiece, high score, great score, absurdres",
        "negative_prompt": "lowres, bad anatomy, bad hands, text, error, missing finger, extra digits, fewer digits, "
                           "cropped, worst quality, low quality, low score, bad score, average score, signature, "
                           "watermark, username, blurry",
    }
    assert ledger.balance(user=alice) == Decimal(1)
    assert not Generation.objects.exists()


@pytest.mark.django_db
def test_enhance_without_nsfw_adds_a_safe_rating_and_the_nsfw_negative(client, alice_key):
    response = enhance(client, alice_key, {"prompt": "nude girl on a bed", "allowNSFW": False})
    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["enhanced_prompt"].startswith("1girl, solo, safe, on_bed, bed, ")
    assert "nude" not in body["enhanced_prompt"].split(", ")
    assert {"nsfw", "nude"} <= set(body["negative_prompt"].split(", "))


@pytest.mark.django_db
@pytest.mark.parametrize("body, code", [
    ({}, "INVALID_PROMPT"),
    ({"prompt": "   "}, "INVALID_PROMPT"),
    ({"prompt": 42}, "INVALID_PROMPT"),
    ({"prompt": "x" * 1001}, "INVALID_PROMPT"),
    ({"prompt": "a girl", "allowNSFW": "false"}, "INVALID_ALLOW_NSFW"),
    ({"prompt": "a girl", "allowNsfw": False}, "UNKNOWN_FIELD"),
    (["a girl"], "INVALID_REQUEST"),
])
def test_enhance_refuses_bad_input_with_json_errors(client, alice_key, body, code):
    response = enhance(client, alice_key, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == code
    assert response.json()["error"]


@pytest.mark.django_db
def test_enhance_and_tags_need_a_valid_key(client, alice_key):
    refused = client.post("/api/enhance", {"prompt": "a girl"}, content_type="application/json")
    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    assert (refused.json()["error"], refused.json()["code"]) == ("Invalid API key", "INVALID_KEY")
    assert client.get("/api/tags?q=blue").status_code == HTTPStatus.UNAUTHORIZED
    assert tags(client, "ank_not_a_real_key", "?q=blue").json()["code"] == "INVALID_KEY"


@pytest.mark.django_db
def test_enhance_only_answers_post(client, alice_key):
    response = client.get("/api/enhance", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.django_db
def test_tags_autocomplete_by_post_count(client, alice_key):
    response = tags(client, alice_key, "?q=blue%20h&limit=3")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"results": [
        {"tag": "blue_hair", "category": 0, "post_count": 855605},
        {"tag": "blue_hat", "category": 0, "post_count": 32945},
        {"tag": "light_blue_hair", "category": 0, "post_count": 32469},
    ]}


@pytest.mark.django_db
def test_tags_resolve_aliases_and_match_words_inside_names(client, alice_key):
    by_alias = [r["tag"] for r in tags(client, alice_key, "?q=catgirl").json()["results"]]
    assert "cat_girl" in by_alias
    by_word = tags(client, alice_key, "?q=miku").json()["results"]
    assert by_word[0] == {"tag": "hatsune_miku", "category": 4, "post_count": 106634}
    counts = [r["post_count"] for r in by_word]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.django_db
@pytest.mark.parametrize("query, code", [("", "INVALID_QUERY"), ("?q=", "INVALID_QUERY"), ("?q=" + "a" * 101, "INVALID_QUERY"),
                                         ("?q=blue&limit=0", "INVALID_LIMIT"), ("?q=blue&limit=51", "INVALID_LIMIT"),
                                         ("?q=blue&limit=ten", "INVALID_LIMIT")])
def test_tags_refuse_bad_queries(client, alice_key, query, code):
    response = tags(client, alice_key, query)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == code


@pytest.mark.django_db
def test_free_endpoints_are_rate_limited_per_key(client, settings, alice_key, charlie_key):
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 1  # the free bucket allows six times that
    for _ in range(6):
        assert tags(client, alice_key, "?q=blue").status_code == HTTPStatus.OK
    refused = enhance(client, alice_key, {"prompt": "a girl"})
    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(refused["Retry-After"]) > 0
    assert enhance(client, charlie_key, {"prompt": "a girl"}).status_code == HTTPStatus.OK
