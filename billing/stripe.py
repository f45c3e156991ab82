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
CARD_SETUP_PURPOSE = "animeapi_save_card"
RECHARGE_PURPOSE = "animeapi_auto_recharge"
# Our failure code for an off-session charge Stripe refused as invalid (not a card decline).
INVALID_REQUEST = "invalid_request"


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


@dataclass(frozen=True)
class SavedCard:
    """What we keep of a card: never its number, only what the billing page shows."""

    payment_method_id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True)
class OffSessionPayment:
    """Stripe's answer to an off-session charge. `failure_code` is empty unless it failed now."""

    payment_intent_id: str
    status: str
    failure_code: str = ""
    failure_message: str = ""


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
def create_customer(*, user_id: int, email: str, idempotency_key: str) -> str:
    customer = _client().v1.customers.create(
        {"email": email, "metadata": {"user_id": str(user_id)}}, {"idempotency_key": idempotency_key}
    )
    return customer.id


@_calls_stripe
def create_checkout_session(
    *, user_id: int, email: str, amount_cents: int, success_url: str, cancel_url: str, idempotency_key: str,
    save_card_for_customer: str = "",
) -> CheckoutSession:
    """A Checkout payment; with save_card_for_customer (a Customer id) the card is kept for off-session use."""
    metadata = {"user_id": str(user_id), "purpose": TOPUP_PURPOSE}
    payer = {"customer_email": email}
    future_usage = {}
    if save_card_for_customer:
        # The webhook reads "save_card" to store the card once the payment is through.
        metadata = {**metadata, "save_card": "1"}
        payer = {"customer": save_card_for_customer}
        future_usage = {"setup_future_usage": "off_session"}
    payment_intent_data = {"metadata": metadata, **future_usage}
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
            "payment_intent_data": payment_intent_data,
            **payer,
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        {"idempotency_key": idempotency_key},
    )
    return CheckoutSession(id=session.id, url=session.url)


@_calls_stripe
def create_card_setup_session(
    *, user_id: int, customer_id: str, success_url: str, cancel_url: str, idempotency_key: str
) -> CheckoutSession:
    """Checkout in setup mode: the user enters a card, nothing is charged, the card is saved off-session."""
    metadata = {"user_id": str(user_id), "purpose": CARD_SETUP_PURPOSE}
    session = _client().v1.checkout.sessions.create(
        {
            "mode": "setup",
            "customer": customer_id,
            "payment_method_types": ["card"],
            "client_reference_id": str(user_id),
            "metadata": metadata,
            "setup_intent_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        {"idempotency_key": idempotency_key},
    )
    return CheckoutSession(id=session.id, url=session.url)


def _saved_card(payment_method: dict | None) -> SavedCard | None:
    if not isinstance(payment_method, dict) or payment_method.get("type") != "card":
        return None
    card = payment_method.get("card") or {}
    return SavedCard(
        payment_method_id=payment_method["id"], brand=str(card.get("brand") or "card"),
        last4=str(card.get("last4") or ""), exp_month=card.get("exp_month"), exp_year=card.get("exp_year"),
    )


@_calls_stripe
def card_of_setup_intent(*, setup_intent_id: str) -> tuple[str, SavedCard | None]:
    """The SetupIntent's status and the card it set up."""
    intent = _client().v1.setup_intents.retrieve(setup_intent_id, {"expand": ["payment_method"]}).to_dict()
    return intent.get("status") or "", _saved_card(intent.get("payment_method"))


@_calls_stripe
def card_of_payment_intent(*, payment_intent_id: str) -> SavedCard | None:
    intent = _client().v1.payment_intents.retrieve(payment_intent_id, {"expand": ["payment_method"]}).to_dict()
    return _saved_card(intent.get("payment_method"))


@_calls_stripe
def detach_payment_method(*, payment_method_id: str) -> None:
    _client().v1.payment_methods.detach(payment_method_id)


def charge_saved_card(
    *, customer_id: str, payment_method_id: str, amount_cents: int, metadata: dict, idempotency_key: str
) -> OffSessionPayment:
    """Create and confirm an off-session PaymentIntent. A declined card or one that needs its
    holder (3-D Secure) is an answer, not an exception, and so is a request Stripe refuses
    (failure_code INVALID_REQUEST); StripeUnavailable means try again with the same idempotency key."""
    try:
        intent = _client().v1.payment_intents.create(
            {
                "amount": amount_cents,
                "currency": "usd",
                "customer": customer_id,
                "payment_method": payment_method_id,
                "confirm": True,
                "off_session": True,
                "metadata": metadata,
            },
            {"idempotency_key": idempotency_key},
        ).to_dict()
    except stripe.CardError as exc:
        # Stripe puts the failed PaymentIntent in the error; a fake may not.
        intent = (exc.json_body or {}).get("error", {}).get("payment_intent") or {}
        return OffSessionPayment(
            payment_intent_id=intent.get("id") or "", status=intent.get("status") or "requires_payment_method",
            failure_code=exc.code or "card_declined", failure_message=exc.user_message or str(exc),
        )
    except (stripe.InvalidRequestError, stripe.IdempotencyError) as exc:
        # Stripe refuses this request as it stands (the card detached, the key reused with other
        # parameters): sending it again cannot help, so it is an answer too.
        return OffSessionPayment(
            payment_intent_id="", status="", failure_code=INVALID_REQUEST,
            failure_message=(exc.user_message or str(exc))[:255],
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
        raise StripeUnavailable(str(exc)) from exc
    except stripe.StripeError as exc:
        # An authentication or permission error is our configuration, not the card; the retries
        # and then "could not be reached" leave the user's card alone while staff fix it.
        raise StripeUnavailable(str(exc)) from exc
    if intent.get("status") == "requires_action":
        # Stripe answers a card that needs its holder with an error when off_session is set; some
        # API versions and fakes answer with this status instead. Either way nobody is there to act.
        return OffSessionPayment(
            payment_intent_id=intent["id"], status=intent["status"], failure_code="authentication_required",
            failure_message="Your card needs you to confirm this payment.",
        )
    return OffSessionPayment(payment_intent_id=intent["id"], status=intent.get("status") or "")


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
def payment_intent(*, payment_intent_id: str) -> dict:
    return _client().v1.payment_intents.retrieve(payment_intent_id).to_dict()


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
