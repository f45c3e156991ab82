"""Optional LLM mode: any OpenAI-compatible chat endpoint (POST {ENHANCE_LLM_URL}/chat/completions)
proposes the tags. Its answer is only advice: every tag is checked against the vocabulary, what
the prompt negates stays out, and an error, a timeout or an answer with no real tag leaves the
offline analysis in place.
"""

import logging
import re

import httpx
from django.conf import settings

from .offline import COUNT_TAG, RATING_WORDS, Analysis, unique
from .vocabulary import CHARACTER, COPYRIGHT, Vocabulary

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You turn descriptions of anime pictures into Danbooru tags for an anime image model. "
    "Answer with one line of comma-separated Danbooru tags, lower case with underscores: first the "
    "count tags (1girl, 2girls, 1boy, solo, no_humans), then character tags, then their series, then "
    "general tags for appearance, clothing, pose, expression, setting, lighting and composition. "
    "Use only tags that exist on Danbooru. Leave out anything the description says is absent. "
    "No quality or rating tags, no explanations."
)


class LlmAnswerUnusable(Exception):
    pass


def refine(prompt: str, offline: Analysis, vocabulary: Vocabulary) -> Analysis:
    """The LLM's tags as an Analysis, or the offline one whenever the LLM cannot be used."""
    try:
        return analysis_from_answer(ask(prompt), offline, vocabulary)
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, LlmAnswerUnusable) as exc:
        log.warning("LLM enhancer unavailable (%s: %s); using the offline enhancer", type(exc).__name__, exc)
        return offline


def ask(prompt: str) -> str:
    body = {
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 300,
    }
    if settings.ENHANCE_LLM_MODEL:
        body["model"] = settings.ENHANCE_LLM_MODEL
    headers = {"Authorization": f"Bearer {settings.ENHANCE_LLM_API_KEY}"} if settings.ENHANCE_LLM_API_KEY else {}
    response = httpx.post(f"{settings.ENHANCE_LLM_URL.rstrip('/')}/chat/completions", json=body, headers=headers,
                          timeout=settings.ENHANCE_LLM_TIMEOUT_S)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def analysis_from_answer(answer: str, offline: Analysis, vocabulary: Vocabulary) -> Analysis:
    if not isinstance(answer, str):
        raise LlmAnswerUnusable("the answer has no text")
    tags = []
    for piece in re.split(r"[,\n]", answer):
        tag = vocabulary.resolve(piece.strip().strip(".`'\"*- "))
        if tag and tag not in offline.negated and tag not in RATING_WORDS:
            tags.append(tag)
    counts = [t for t in tags if COUNT_TAG.match(t)]
    characters = [t for t in tags if vocabulary.category(t) == CHARACTER]
    series = [t for t in tags if vocabulary.category(t) == COPYRIGHT]
    general = [t for t in tags if vocabulary.is_descriptive(t) and t not in counts]
    if not (characters or general):
        raise LlmAnswerUnusable("no real Danbooru tag in the answer")
    series += [vocabulary.character(c).series for c in characters if vocabulary.character(c).series]
    return Analysis(counts=unique(counts) or offline.counts, characters=unique(characters), series=unique(series),
                    general=unique(general), negated=offline.negated, rating=offline.rating)
