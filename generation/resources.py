"""How a Generation looks from outside: the API's answers, GET /api/generations and webhooks."""

from django.conf import settings

from billing import ledger
from billing.models import LedgerEntry
from config.errors import error_body

from . import images, limits
from .models import ORIENTATIONS, Generation
from .safety import policy

Status = Generation.Status

ERRORS = {
    policy.REFUSAL_CODE: (400, policy.REFUSAL_MESSAGE),
    "INSUFFICIENT_BALANCE": (402, "Insufficient balance"),
    "KEY_SPEND_CAP_REACHED": (402, "This API key has reached its spend cap"),
    "NSFW_CONTENT_BLOCKED": (422, "The image was flagged as NSFW and withheld; you were not charged"),
    "GENERATION_FAILED": (500, "Generation failed"),
}


def balance_after_charge(generation: Generation):
    """The user's balance right after this generation's charge (the reference's balance_usd)."""
    balance = getattr(generation, "balance_after", None)
    if balance is None:
        balance = (LedgerEntry.objects.filter(reference=generation.charge_reference)
                   .values_list("balance_after", flat=True).first())
    if balance is None:  # a test key's generation: nothing was charged
        balance = ledger.balance(user=generation.user)
    return balance


def success_body(generation: Generation, *, request=None) -> dict:
    """The reference's four fields, then ours (added fields only)."""
    return {
        "image_url": (images.image_url(generation.image, request=request, base_url=generation.base_url)
                      if generation.image else None),
        "enhanced_prompt": generation.enhanced_prompt,
        # JSON numbers, as the reference says; the ledger itself stays Decimal.
        "balance_usd": float(balance_after_charge(generation)),
        "generation_time_ms": generation.total_ms,
        "id": str(generation.id),
        "cost_usd": float(generation.cost_usd),
        "seed": generation.seed,
        "width": generation.width,
        "height": generation.height,
        "model": generation.model,
    }


def error_for(generation: Generation) -> tuple[int, dict]:
    status, message = ERRORS.get(generation.error_code, ERRORS["GENERATION_FAILED"])
    return status, error_body(message, generation.error_code or "GENERATION_FAILED")


def answer_for(generation: Generation, *, request=None) -> tuple[int, dict]:
    """The synchronous answer: status code and body."""
    if generation.status == Status.SUCCEEDED:
        return 200, success_body(generation, request=request)
    return error_for(generation)


def generation_resource(generation: Generation, *, request=None) -> dict:
    """GET /api/generations/{id}: the status, and once finished the same fields as the sync answer."""
    body = {
        "id": str(generation.id),
        "status": generation.status,
        "created_at": generation.created_at.isoformat().replace("+00:00", "Z"),
        "prompt": generation.prompt,
        "orientation": generation.orientation,
        "allowNSFW": generation.allow_nsfw,
        "enhance": generation.enhance,
    }
    if generation.status == Status.SUCCEEDED:
        body.update(success_body(generation, request=request))
    elif generation.status == Status.FAILED:
        body["error"] = error_for(generation)[1]
    return body


def generation_event(generation: Generation) -> dict:
    """The webhook body."""
    return {"type": f"generation.{generation.status}", "data": generation_resource(generation)}


def pricing_for(*, user, api_key) -> dict:
    """GET /api/pricing: what an image costs this caller, the limits, and what is left today."""
    is_test = api_key is not None and api_key.is_test
    price = 0 if is_test else settings.ANIMEAPI_PRICE_USD
    balance = ledger.balance(user=user)
    try:
        used = limits.daily_used(user_id=user.pk, test=is_test)
    except limits.LimitsUnavailable:
        used = None
    return {
        "currency": "USD",
        "price_per_image_usd": float(price),
        "test_mode": is_test,
        "orientations": {name: {"width": w, "height": h} for name, (w, h) in ORIENTATIONS.items()},
        "limits": {
            "requests_per_minute_per_key": settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE,
            "images_per_day_per_user": settings.ANIMEAPI_DAILY_LIMIT,
        },
        "remaining": {
            "images_today": None if used is None else max(0, settings.ANIMEAPI_DAILY_LIMIT - used),
            "balance_usd": float(balance),
            "images_affordable": None if is_test else max(0, int(balance // settings.ANIMEAPI_PRICE_USD)),
        },
    }
