"""The models a caller may choose (`model` on /api/generate and /v1/images/generations, listed by
GET /api/models and GET /v1/models): GENERATION_MODELS, or one model made of the single-model
settings when it is unset.

GENERATION_MODELS is a JSON list, one object per model:
  {"id": "noobai-xl", "name": "NoobAI-XL 1.1", "family": "noobai", "steps": 28, "cfg": 5.5,
   "price_usd": "0.009", "runware_air": "civitai:833294@1190596", "diffusers_model": "/models/noobai.safetensors"}
Only `id` and `family` are required; the rest default to the RUNWARE_* / DIFFUSERS_* /
ANIMEAPI_PRICE_USD settings. GENERATION_DEFAULT_MODEL names the default (else the first).

Runware renders any model by its AIR id. A diffusers worker loads one model
(GENERATION_WORKER_MODEL, default: the default model) and takes the tasks of that model's queue
(queue_for): adding a model is adding workers for it.
"""

import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .enhance.styles import FAMILIES
from .models import ORIENTATIONS

MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# The model a deployment without GENERATION_MODELS serves, named after its enhancer family.
SINGLE_MODEL_NAMES = {
    "animagine4": ("animagine-xl-4", "Animagine XL 4.0"),
    "illustrious": ("illustrious-xl", "Illustrious-XL"),
    "noobai": ("noobai-xl", "NoobAI-XL"),
    "none": ("default", "Default model"),
}
DEFAULT_QUEUE = "generate"


@dataclass(frozen=True)
class GenerationModel:
    id: str
    name: str
    family: str  # the enhancer's quality tags and negative prompt (generation.enhance.styles)
    steps: int | None  # None: the backend's own default (RUNWARE_STEPS / DIFFUSERS_STEPS)
    cfg: float | None  # None: RUNWARE_CFG_SCALE / DIFFUSERS_CFG
    price_usd: Decimal
    runware_air: str = ""
    diffusers_model: str = ""

    @property
    def sizes(self) -> dict[str, tuple[int, int]]:
        return dict(ORIENTATIONS)

    def default_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return settings.RUNWARE_STEPS if settings.GENERATION_BACKEND == "runware" else settings.DIFFUSERS_STEPS

    def default_cfg(self) -> float:
        if self.cfg is not None:
            return self.cfg
        return settings.RUNWARE_CFG_SCALE if settings.GENERATION_BACKEND == "runware" else settings.DIFFUSERS_CFG


class UnknownModel(Exception):
    pass


def _model_from(entry: dict) -> GenerationModel:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not MODEL_ID.match(entry["id"]):
        raise ImproperlyConfigured(f"GENERATION_MODELS: each model needs an id matching {MODEL_ID.pattern}: {entry!r}")
    family = entry.get("family", settings.ENHANCE_STYLE)
    if family not in FAMILIES:
        raise ImproperlyConfigured(f"GENERATION_MODELS: {entry['id']}: family must be one of {sorted(FAMILIES)}")
    try:
        price = Decimal(str(entry.get("price_usd", settings.ANIMEAPI_PRICE_USD)))
    except InvalidOperation:
        raise ImproperlyConfigured(f"GENERATION_MODELS: {entry['id']}: price_usd is not a number") from None
    if not price.is_finite() or price <= 0:
        # The ledger reserves only positive amounts: a free or negative price would fail every request.
        raise ImproperlyConfigured(f"GENERATION_MODELS: {entry['id']}: price_usd must be a positive number of USD")
    return GenerationModel(
        id=entry["id"], name=str(entry.get("name", entry["id"])), family=family,
        steps=int(entry["steps"]) if entry.get("steps") is not None else None,
        cfg=float(entry["cfg"]) if entry.get("cfg") is not None else None,
        price_usd=price, runware_air=str(entry.get("runware_air", "")),
        diffusers_model=str(entry.get("diffusers_model", "")),
    )


def _single_model() -> GenerationModel:
    model_id, name = SINGLE_MODEL_NAMES.get(settings.ENHANCE_STYLE, SINGLE_MODEL_NAMES["none"])
    return _model_from({"id": model_id, "name": name, "family": settings.ENHANCE_STYLE,
                        "runware_air": settings.RUNWARE_MODEL, "diffusers_model": settings.DIFFUSERS_MODEL or ""})


@functools.cache
def _catalog(raw: str, default_id: str, *_settings_that_shape_it) -> tuple[dict[str, GenerationModel], str]:
    if raw.strip():
        try:
            entries = json.loads(raw)
        except ValueError as exc:
            raise ImproperlyConfigured(f"GENERATION_MODELS is not valid JSON: {exc}") from None
        if not isinstance(entries, list) or not entries:
            raise ImproperlyConfigured("GENERATION_MODELS must be a non-empty JSON list of models")
        models = [_model_from(entry) for entry in entries]
    else:
        models = [_single_model()]
    by_id = {model.id: model for model in models}
    if len(by_id) != len(models):
        raise ImproperlyConfigured("GENERATION_MODELS: two models share an id")
    default_id = default_id or models[0].id
    if default_id not in by_id:
        raise ImproperlyConfigured(f"GENERATION_DEFAULT_MODEL {default_id!r} is not in GENERATION_MODELS")
    return by_id, default_id


def _current() -> tuple[dict[str, GenerationModel], str]:
    # Keyed by every setting it reads, so tests (and override_settings) never see a stale catalog.
    return _catalog(settings.GENERATION_MODELS, settings.GENERATION_DEFAULT_MODEL, settings.ENHANCE_STYLE,
                    settings.RUNWARE_MODEL, settings.DIFFUSERS_MODEL, settings.ANIMEAPI_PRICE_USD)


def all_models() -> list[GenerationModel]:
    return list(_current()[0].values())


def default_model() -> GenerationModel:
    by_id, default_id = _current()
    return by_id[default_id]


def get_model(model_id: str | None) -> GenerationModel:
    """The model by id; the default for None or ""; UnknownModel otherwise."""
    if not model_id:
        return default_model()
    model = _current()[0].get(model_id)
    if model is None:
        raise UnknownModel(model_id)
    return model


def is_available(model: GenerationModel, *, backend_name: str) -> bool:
    """Whether `backend_name` can render `model`: Runware needs its AIR id, diffusers a checkpoint
    (workers for it are the operator's part); the preview and plug-in backends render anything."""
    if backend_name == "runware":
        return bool(model.runware_air)
    if backend_name == "diffusers":
        return bool(model.diffusers_model)
    return True


def queue_for(model: GenerationModel, *, backend_name: str) -> str:
    """The Celery queue of a generation: each diffusers model but the default has its own
    (`generate.<id>`), whose workers loaded that model; everything else shares `generate`."""
    if backend_name == "diffusers" and model.id != default_model().id:
        return f"{DEFAULT_QUEUE}.{model.id}"
    return DEFAULT_QUEUE


def worker_model() -> GenerationModel:
    """The model this diffusers worker loads (GENERATION_WORKER_MODEL, default: the default model)."""
    return get_model(settings.GENERATION_WORKER_MODEL)
