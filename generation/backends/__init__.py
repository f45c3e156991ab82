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
    """A backend by name, or by dotted path to a GenerationBackend class (benchmarks, plug-ins)."""
    name = name or settings.GENERATION_BACKEND
    path = BACKENDS.get(name) or (name if "." in name else None)
    if path is None:
        raise ValueError(f"GENERATION_BACKEND must be one of {sorted(BACKENDS)} or a dotted path, got {name!r}")
    return import_string(path)()
