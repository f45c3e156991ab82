"""How a Generation looks from outside: the API's answers, GET /api/generations and webhooks."""

from billing.models import LedgerEntry
from config.errors import error_body

from . import images
from .models import Generation

Status = Generation.Status

ERRORS = {
    "INSUFFICIENT_BALANCE": (402, "Insufficient balance"),
    "NSFW_CONTENT_BLOCKED": (422, "The image was flagged as NSFW and withheld; you were not charged"),
    "GENERATION_FAILED": (500, "Generation failed"),
}


def balance_after_charge(generation: Generation):
    """The user's balance right after this generation's charge (the reference's balance_usd)."""
    balance = getattr(generation, "balance_after", None)
    if balance is None:
        balance = (LedgerEntry.objects.filter(reference=generation.charge_reference)
                   .values_list("balance_after", flat=True).first())
    return balance


def success_body(generation: Generation, *, request=None) -> dict:
    """The reference's four fields."""
    return {
        "image_url": images.image_url(generation.image, request=request, base_url=generation.base_url),
        "enhanced_prompt": generation.enhanced_prompt,
        # A JSON number, as the reference says; the ledger itself stays Decimal.
        "balance_usd": float(balance_after_charge(generation)),
        "generation_time_ms": generation.total_ms,
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
