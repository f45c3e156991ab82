"""Prompt enhancement: natural language (English, Japanese, Chinese) to real Danbooru tags, in the
order and with the quality tokens of the configured model family.

Offline by default: rules over a vocabulary shipped in data/ (see scripts/build_vocabulary.py),
deterministic, a few milliseconds. With ENHANCE_LLM_URL set, an OpenAI-compatible model proposes
the tags instead; they are checked against the same vocabulary, and any failure falls back to the
offline enhancer.
"""

from dataclasses import dataclass

from django.conf import settings

from . import llm, offline, styles
from .vocabulary import get_vocabulary


@dataclass(frozen=True)
class EnhancedPrompt:
    prompt: str  # the positive prompt sent to the backend
    negative_prompt: str


def negative_prompt(*, allow_nsfw: bool, style: str | None = None) -> str:
    """The family's negative prompt (plus the NSFW terms unless allowed), for enhance=false."""
    return styles.negative_prompt(styles.family(style or settings.ENHANCE_STYLE), allow_nsfw=allow_nsfw)


def enhance_prompt(prompt: str, *, allow_nsfw: bool, style: str | None = None) -> EnhancedPrompt:
    family = styles.family(style or settings.ENHANCE_STYLE)
    vocabulary = get_vocabulary()
    analysis = offline.analyse(prompt, vocabulary)
    if settings.ENHANCE_LLM_URL:
        analysis = llm.refine(prompt, analysis, vocabulary)
    positive, negative = styles.render(analysis, family, allow_nsfw=allow_nsfw, explicit=vocabulary.explicit)
    return EnhancedPrompt(positive, negative)
