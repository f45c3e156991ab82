"""Prompt enhancement: natural language to Danbooru tags.

Minimal pass-through with quality tags until the offline enhancer lands (issue 7).
"""

from dataclasses import dataclass

QUALITY_SUFFIX = "masterpiece, high score, great score, absurdres"
NEGATIVE = "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, jpeg artifacts, signature, watermark, username, blurry"
NSFW_NEGATIVE = "nsfw, explicit, nude, nipples, pussy, penis, sex"


@dataclass(frozen=True)
class EnhancedPrompt:
    prompt: str
    negative_prompt: str


def negative_prompt(*, allow_nsfw: bool) -> str:
    return NEGATIVE if allow_nsfw else f"{NEGATIVE}, {NSFW_NEGATIVE}"


def enhance_prompt(prompt: str, *, allow_nsfw: bool) -> EnhancedPrompt:
    rating = "" if allow_nsfw else ", safe"
    return EnhancedPrompt(f"{prompt.strip()}, {QUALITY_SUFFIX}{rating}", negative_prompt(allow_nsfw=allow_nsfw))
