"""The one module that talks to Stripe. The rest of the project gets plain dicts and our exceptions.

Amounts here are what Stripe uses: integer cents. Converting to the ledger's USD happens in
billing.topups.
"""

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import stripe
from django.conf import settings

from config.parsers import MAX_JSON_DEPTH, nesting_depth

# Stripe's own default; a signed event older than this is refused as a possible replay.
WEBHOOK_TOLERANCE_S = 300
# Our metadata on every Checkout Session, so sessions made by anything else on the account are not mistaken for ours.
TOPUP_PURPOSE = "animeapi_balance_topup"


class StripeNotConfigured(Exception):
    """STRIPE_SECRET_KEY (or, for webhooks, STRIPE_WEBHOOK_SECRET) is not set."""


class StripeUnavailable(Exception):
    """Stripe answered with an error or could not be reached."""


class InvalidWebhook(Exception):
    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _client_for(secret_key: str, api_base: str) -> stripe.StripeClient:
    # Retries are safe: the library sends an idempotency key with every POST it retries.
    return stripe.StripeClient(
        secret_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=2,
    )


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise StripeNotConfigured()
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE)


def _calls_stripe(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except stripe.StripeError as exc:
            raise StripeUnavailable(str(exc)) from exc

    return wrapper


@_calls_stripe
def create_checkout_session(
    *, user_id: int, email: str, amount_cents: int, success_url: str, cancel_url: str, idempotency_key: str
) -> CheckoutSession:
    metadata = {"user_id": str(user_id), "purpose": TOPUP_PURPOSE}
    session = _client().v1.checkout.sessions.create(
        {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": amount_cents,
                        "product_data": {"name": "AnimeAPI balance top-up"},
                    },
                }
            ],
            "client_reference_id": str(user_id),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "customer_email": email,
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        {"idempotency_key": idempotency_key},
    )
    return CheckoutSession(id=session.id, url=session.url)


def verify_webhook(*, payload: bytes, signature: str | None) -> dict:
    """The event Stripe signed, as a dict. Raises InvalidWebhook for anything else."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise StripeNotConfigured()
    if nesting_depth(payload) > MAX_JSON_DEPTH:
        raise InvalidWebhook("Body is not a Stripe event: JSON nested too deeply", "INVALID_JSON")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=WEBHOOK_TOLERANCE_S
        )
    except stripe.SignatureVerificationError:
        raise InvalidWebhook("Invalid or expired Stripe signature", "INVALID_SIGNATURE") from None
    except (ValueError, TypeError, AttributeError):
        # construct_event parses only after the signature checks out: a signed body that is not
        # a JSON object fails inside it with one of these.
        raise InvalidWebhook("Body is not a Stripe event", "INVALID_PAYLOAD") from None
    event = event.to_dict()
    data = event.get("data")
    if (
        event.get("object") != "event"
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise InvalidWebhook("Body is not a Stripe event", "INVALID_PAYLOAD")
    return event


@_calls_stripe
def receipt_url_of_payment_intent(*, payment_intent_id: str) -> str:
    intent = _client().v1.payment_intents.retrieve(payment_intent_id, {"expand": ["latest_charge"]}).to_dict()
    charge = intent.get("latest_charge")
    if not isinstance(charge, dict):
        return ""
    return charge.get("receipt_url") or ""


@_calls_stripe
def payment_intent_of_charge(*, charge_id: str) -> str:
    return _client().v1.charges.retrieve(charge_id).to_dict().get("payment_intent") or ""


@_calls_stripe
def refunds_of_charge(*, charge_id: str) -> list[dict]:
    refunds = _client().v1.refunds.list({"charge": charge_id, "limit": 100})
    return [refund.to_dict() for refund in refunds.auto_paging_iter()]


@_calls_stripe
def checkout_session_of_payment_intent(*, payment_intent_id: str) -> dict | None:
    sessions = _client().v1.checkout.sessions.list({"payment_intent": payment_intent_id, "limit": 1})
    return sessions.data[0].to_dict() if sessions.data else None


def completed_checkout_sessions(*, created_since: datetime) -> Iterator[dict]:
    """Every complete Checkout Session created since then, newest first, across all pages."""
    try:
        sessions = _client().v1.checkout.sessions.list(
            {"status": "complete", "created": {"gte": int(created_since.timestamp())}, "limit": 100}
        )
        for session in sessions.auto_paging_iter():
            yield session.to_dict()
    except stripe.StripeError as exc:
        raise StripeUnavailable(str(exc)) from exc
