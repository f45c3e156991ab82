"""The configured backend, built once per process (models and HTTP clients are reused)."""

import functools

from django.conf import settings
from django.utils.module_loading import import_string

BACKENDS = {
    "preview": "generation.backends.preview.PreviewBackend",
    "runware": "generation.backends.runware.RunwareBackend",
    "diffusers": "generation.backends.diffusers.DiffusersBackend",
}


@functools.cache
def get_backend(name: str | None = None):
    name = name or settings.GENERATION_BACKEND
    try:
        path = BACKENDS[name]
    except KeyError:
        raise ValueError(f"GENERATION_BACKEND must be one of {sorted(BACKENDS)}, got {name!r}") from None
    return import_string(path)()
