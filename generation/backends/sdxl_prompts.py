"""SDXL prompt embeddings for prompts longer than CLIP's 77 tokens, the way compel does it.

CLIP reads 77 tokens (BOS, 75 of text, EOS) and diffusers truncates the rest. Instead, the tokens
are split into 75-token windows, each window is framed and padded like a short prompt and run
through both text encoders, and the windows' hidden states are concatenated along the sequence:
the UNet's cross-attention takes any length. The negative prompt is padded with empty windows to
the same length, because classifier-free guidance runs both through the UNet as one batch.
"""

from dataclasses import dataclass

import torch

WINDOW = 75  # CLIP's 77 positions less BOS and EOS
# A window that would split a tag ends after the last comma instead, when one is this close to
# the end (AUTOMATIC1111's rule): "blue | hair" across two windows reads as two unrelated tokens.
COMMA_LOOKBACK = 20


@dataclass(frozen=True)
class PromptEmbeds:
    prompt_embeds: torch.Tensor  # (1, 77 * windows, 2048 for SDXL)
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor  # (1, 1280): text_encoder_2's projection of the first window
    negative_pooled_prompt_embeds: torch.Tensor
    windows: int

    def pipeline_kwargs(self) -> dict:
        return {
            "prompt_embeds": self.prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
            "pooled_prompt_embeds": self.pooled_prompt_embeds,
            "negative_pooled_prompt_embeds": self.negative_pooled_prompt_embeds,
        }


def split_windows(token_ids: list[int], *, comma_id: int | None) -> list[list[int]]:
    """Token ids (without BOS/EOS) in windows of at most WINDOW, never fewer than one."""
    windows, rest = [], list(token_ids)
    while len(rest) > WINDOW:
        cut = WINDOW
        if comma_id is not None:
            commas = [i for i in range(WINDOW - COMMA_LOOKBACK, WINDOW) if rest[i] == comma_id]
            if commas:
                cut = commas[-1] + 1
        windows.append(rest[:cut])
        rest = rest[cut:]
    windows.append(rest)
    return windows


@torch.inference_mode()
def encode(pipe, prompt: str, negative_prompt: str) -> PromptEmbeds:
    """Embeddings for a StableDiffusionXLPipeline's __call__(prompt_embeds=..., ...)."""
    pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
    token_windows = [
        [split_windows(_token_ids(tokenizer, text), comma_id=_comma_id(tokenizer))
         for text in (prompt, negative_prompt)]
        for tokenizer, _ in pairs
    ]
    count = max(len(windows) for per_tokenizer in token_windows for windows in per_tokenizer)
    hidden, pooled = [], None
    for (tokenizer, text_encoder), (positive, negative) in zip(pairs, token_windows, strict=True):
        rows = _framed(tokenizer, positive, count) + _framed(tokenizer, negative, count)
        ids = torch.tensor(rows, dtype=torch.long, device=text_encoder.device)
        output = text_encoder(ids, output_hidden_states=True)
        # SDXL conditions on the penultimate layer of both encoders.
        states = output.hidden_states[-2]
        hidden.append(states.reshape(2, count * states.shape[1], states.shape[2]))
        if hasattr(output, "text_embeds"):
            pooled = output.text_embeds.reshape(2, count, -1)[:, 0]
    embeds = torch.cat(hidden, dim=-1).to(pipe.unet.dtype)
    pooled = pooled.to(pipe.unet.dtype)
    return PromptEmbeds(
        prompt_embeds=embeds[:1], negative_prompt_embeds=embeds[1:],
        pooled_prompt_embeds=pooled[:1], negative_pooled_prompt_embeds=pooled[1:], windows=count,
    )


def _token_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids


def _comma_id(tokenizer) -> int | None:
    ids = tokenizer(",", add_special_tokens=False).input_ids
    return ids[0] if len(ids) == 1 else None


def _framed(tokenizer, windows: list[list[int]], count: int) -> list[list[int]]:
    """Each window as CLIP expects one prompt: BOS, tokens, EOS, then the tokenizer's own padding
    (EOS for the first SDXL tokenizer, "!" for the second); missing windows are empty prompts."""
    windows = windows + [[]] * (count - len(windows))
    return [[tokenizer.bos_token_id, *w, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * (WINDOW - len(w))
            for w in windows]
