"""The configured backend, built once per process (models and HTTP clients are reused)."""

import functools

from django.conf import settings
from django.utils.module_loading import import_string

BACKENDS = {
    "preview": "generation.backends.preview.PreviewBackend",
    "runware": "generation.backends.runware.RunwareBackend",
    "diffusers": "generation.backends.diffusers.DiffusersBackend",
}


# Known without importing them: the diffusers module imports torch, which web nodes lack.
GPU_BACKENDS = {"diffusers"}


def _backend_class(name: str):
    path = BACKENDS.get(name) or (name if "." in name else None)
    if path is None:
        raise ValueError(f"GENERATION_BACKEND must be one of {sorted(BACKENDS)} or a dotted path, got {name!r}")
    return import_string(path)


@functools.cache
def get_backend(name: str | None = None):
    """A backend by name, or by dotted path to a GenerationBackend class (benchmarks, plug-ins)."""
    return _backend_class(name or settings.GENERATION_BACKEND)()


def renders_in_web(name: str) -> bool:
    """The backend's renders_in_web, read without building it (building the diffusers backend
    loads a model: never in a web process)."""
    return name not in GPU_BACKENDS and _backend_class(name).renders_in_web
