"""WEBP at exactly the requested size, stored through Django's storage API; a generation's image
deleted by its owner or by retention."""

import datetime
import io
import secrets

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image, ImageOps

from .models import Generation

# No backend has a reason to send more than this; anything bigger is refused before decoding
# (Pillow's own bomb check only warns below twice its default limit).
MAX_INPUT_PIXELS = 4096 * 4096


class InvalidImage(Exception):
    pass


def encode_webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=settings.WEBP_QUALITY, method=settings.WEBP_METHOD)
    return buffer.getvalue()


def to_webp(data: bytes, *, width: int, height: int) -> bytes:
    """Return `data` unchanged when it already is a WEBP of width x height; else re-encode it at
    exactly that size (centre-cropped to the aspect ratio, never stretched)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise InvalidImage(f"image of {image.width}x{image.height} is too large")
            if image.format == "WEBP" and image.size == (width, height):
                return data
            image.load()
            converted = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"not a readable image: {exc}") from exc
    if converted.size != (width, height):
        converted = ImageOps.fit(converted, (width, height), method=Image.Resampling.LANCZOS)
    return encode_webp(converted)


def store_image(data: bytes) -> str:
    """Save under a non-guessable name; returns the storage name."""
    name = f"images/{timezone.now():%Y/%m/%d}/{secrets.token_urlsafe(18)}.webp"
    return default_storage.save(name, ContentFile(data))


def delete_image(name: str) -> None:
    if name:
        default_storage.delete(name)


def image_url(name: str, *, request=None, base_url: str = "") -> str:
    """An absolute URL: storage URLs that already are (S3, a CDN) pass through; else
    PUBLIC_BASE_URL, the request's host, or the base URL recorded when the request came in."""
    url = default_storage.url(name)
    if url.startswith(("http://", "https://")):
        return url
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + url
    if request is not None:
        return request.build_absolute_uri(url)
    return base_url.rstrip("/") + url


class GenerationStillRunning(Exception):
    """An unfinished generation's image cannot be deleted yet: it does not exist, and would
    appear after the deletion was answered."""


def delete_generation_image(*, generation: Generation) -> Generation:
    """Remove the image from storage and blank its URL; the record and its charge stay."""
    if generation.status in (Generation.Status.PENDING, Generation.Status.RUNNING):
        raise GenerationStillRunning()
    if generation.image:
        delete_image(generation.image)
        Generation.objects.filter(pk=generation.pk).update(image="", image_deleted_at=timezone.now())
        generation.refresh_from_db()
    return generation


def prune_images(*, older_than_days: int) -> int:
    """Delete images older than the retention period (beat task); records stay."""
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    pruned = 0
    for generation in Generation.objects.filter(created_at__lt=cutoff).exclude(image="").iterator():
        delete_generation_image(generation=generation)
        pruned += 1
    return pruned
