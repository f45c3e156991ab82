"""Model families: where each wants its quality, year and rating tokens, and its negative prompt.

These tokens are what the checkpoints were trained with (from their model cards), not Danbooru
tags: Animagine XL 4.0 reads "1girl, character, series, rating, everything else" and ends with
"masterpiece, high score, great score, absurdres"; NoobAI-XL starts with "masterpiece, best
quality, newest, absurdres, highres" and the rating; Illustrious-XL takes its quality tags last.
"""

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from .offline import Analysis
from .ratings import NSFW_NEGATIVE

SAFE_RATING = "safe"
NSFW_RATING = "nsfw"


@dataclass(frozen=True)
class Family:
    name: str
    prefix: tuple[str, ...]  # quality and year tokens before the content
    suffix: tuple[str, ...]  # ... and after it
    rating_in_prefix: bool  # NoobAI: right after the prefix; the others: after the series
    negative: tuple[str, ...]


FAMILIES = {
    family.name: family
    for family in (
        Family(
            name="animagine4",
            prefix=(),
            suffix=("newest", "masterpiece", "high score", "great score", "absurdres"),
            rating_in_prefix=False,
            negative=("lowres", "bad anatomy", "bad hands", "text", "error", "missing finger", "extra digits",
                      "fewer digits", "cropped", "worst quality", "low quality", "low score", "bad score",
                      "average score", "signature", "watermark", "username", "blurry"),
        ),
        Family(
            name="illustrious",
            prefix=(),
            suffix=("masterpiece", "best quality", "absurdres"),
            rating_in_prefix=False,
            negative=("worst quality", "comic", "multiple views", "bad quality", "low quality", "lowres",
                      "displeasing", "very displeasing", "bad anatomy", "bad hands", "scan artifacts",
                      "signature", "twitter username", "jpeg artifacts", "2koma", "4koma", "extra digits",
                      "fewer digits"),
        ),
        Family(
            name="noobai",
            prefix=("masterpiece", "best quality", "newest", "absurdres", "highres"),
            suffix=(),
            rating_in_prefix=True,
            negative=("worst quality", "old", "early", "low quality", "lowres", "signature", "username", "logo",
                      "bad hands", "mutated hands", "mammal", "anthro", "furry", "ambiguous form", "feral",
                      "semi-anthro"),
        ),
        Family(name="none", prefix=(), suffix=(), rating_in_prefix=False, negative=()),
    )
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ImproperlyConfigured(f"ENHANCE_STYLE must be one of {', '.join(FAMILIES)}, got {name!r}") from None


def format_tag(tag: str) -> str:
    """Parentheses escaped, as the model cards write them: prompt front-ends read a bare "(...)"
    as a weight, which would turn artoria_pendragon_(fate) into a weighted "fate"."""
    return tag.replace("(", "\\(").replace(")", "\\)")


def rating(analysis: Analysis, *, allow_nsfw: bool, explicit_present: bool) -> str:
    if not allow_nsfw:
        return SAFE_RATING
    if analysis.rating:
        return analysis.rating
    return NSFW_RATING if explicit_present else ""


def render(analysis: Analysis, chosen: Family, *, allow_nsfw: bool, explicit: frozenset[str]) -> tuple[str, str]:
    """The positive and negative prompts for a family. Explicit tags are dropped when NSFW is not
    allowed; the rating then says "safe" and the negative prompt lists the NSFW terms."""
    general = [t for t in analysis.general if allow_nsfw or t not in explicit]
    content_rating = rating(analysis, allow_nsfw=allow_nsfw, explicit_present=any(t in explicit for t in general))
    subject = [*analysis.counts, *analysis.characters, *analysis.series]
    ratings = [content_rating] if content_rating else []
    if chosen.rating_in_prefix:
        tokens = [*chosen.prefix, *ratings, *map(format_tag, subject), *map(format_tag, general), *chosen.suffix]
    else:
        tokens = [*chosen.prefix, *map(format_tag, subject), *ratings, *map(format_tag, general), *chosen.suffix]
    negated = [format_tag(t) for t in analysis.negated]
    return ", ".join(dict.fromkeys(tokens)), negative_prompt(chosen, allow_nsfw=allow_nsfw, extra=negated)


def negative_prompt(chosen: Family, *, allow_nsfw: bool, extra: list[str] = ()) -> str:
    terms = [*extra, *chosen.negative, *(() if allow_nsfw else NSFW_NEGATIVE)]
    return ", ".join(dict.fromkeys(terms))
