"""A clearly labelled placeholder image: the product runs end to end with no GPU and no network.

It is the dev default, like Django's console e-mail backend; it never pretends to be a model.
"""

import hashlib
import textwrap

from PIL import Image, ImageDraw, ImageFont

from ..images import encode_webp
from .base import BackendImage, GenerationBackend, ImageRequest


class PreviewBackend(GenerationBackend):
    name = "preview"
    renders_in_web = True
    waits_seconds = False

    def generate(self, request: ImageRequest, *, deadline: float) -> BackendImage:
        # A colour derived from the prompt and seed, so different requests look different.
        digest = hashlib.sha256(f"{request.seed}:{request.prompt}".encode()).digest()
        top, bottom = tuple(digest[:3]), tuple(digest[3:6])
        image = Image.new("RGB", (request.width, request.height), top)
        draw = ImageDraw.Draw(image)
        band = request.height // 3
        draw.rectangle([0, band * 2, request.width, request.height], fill=bottom)
        font = ImageFont.load_default(size=max(18, request.width // 28))
        small = ImageFont.load_default(size=max(14, request.width // 40))
        margin = request.width // 16
        draw.rectangle([margin // 2, margin // 2, request.width - margin // 2, margin * 2], fill=(0, 0, 0))
        draw.text((margin, margin * 0.75), "PREVIEW - not a generated image", fill=(255, 255, 255), font=font)
        chars_per_line = max(20, int((request.width - 2 * margin) / (small.size * 0.55)))
        body = "\n".join(textwrap.wrap(request.prompt, width=chars_per_line)[:18])
        draw.multiline_text((margin, margin * 3), body, fill=(255, 255, 255), font=small, spacing=6,
                            stroke_width=2, stroke_fill=(0, 0, 0))
        draw.text((margin, request.height - margin * 1.5), f"{request.width}x{request.height} · seed {request.seed}",
                  fill=(255, 255, 255), font=small, stroke_width=2, stroke_fill=(0, 0, 0))
        # Already a WEBP of the exact size, so the pipeline stores it without re-encoding.
        return BackendImage(data=encode_webp(image), seed=request.seed, model="preview", nsfw=False,
                            details={"backend": "preview"})
