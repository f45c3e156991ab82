"""Saved cards: one Stripe Customer per user (created once, stored), and the card kept on it for
auto-recharge. A card is saved by Checkout (a top-up with "save my card", or setup mode with no
payment) and stored from Stripe's webhook; we keep its brand, last four digits and expiry only.
Stripe calls never run inside a database transaction.
"""

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from . import autorecharge, stripe
from .models import StripeCustomer

log = logging.getLogger(__name__)


def card_of(*, user) -> StripeCustomer | None:
    """The user's customer row when it holds a card; None when there is no card to show."""
    return StripeCustomer.objects.filter(user=user).exclude(payment_method_id="").first()


def customer_of(*, user) -> StripeCustomer:
    """The user's Stripe Customer, created on first use. The idempotency key makes two concurrent
    first uses get the same Customer, and the unique user column keeps one row."""
    existing = StripeCustomer.objects.filter(user=user).first()
    if existing is not None:
        return existing
    customer_id = stripe.create_customer(user_id=user.pk, email=user.email, idempotency_key=f"customer:{user.pk}")
    customer, _ = StripeCustomer.objects.get_or_create(user=user, defaults={"customer_id": customer_id})
    return customer


def start_card_setup(*, user, request_token: uuid.UUID, success_url: str, cancel_url: str) -> stripe.CheckoutSession:
    """Checkout in setup mode: add or replace the card without paying."""
    customer = customer_of(user=user)
    return stripe.create_card_setup_session(
        user_id=user.pk, customer_id=customer.customer_id, success_url=success_url, cancel_url=cancel_url,
        idempotency_key=f"card-setup:{user.pk}:{request_token}",
    )


def store_card(*, user, card: stripe.SavedCard) -> bool:
    """Keep the card as the user's one saved card (replacing any other). False when the user has
    no Customer of ours, so the card cannot be charged off-session by us."""
    with transaction.atomic():
        customer = StripeCustomer.objects.select_for_update().filter(user=user).first()
        if customer is None:
            return False
        replaced = customer.payment_method_id
        StripeCustomer.objects.filter(pk=customer.pk).update(
            payment_method_id=card.payment_method_id, card_brand=card.brand[:20], card_last4=card.last4[:4],
            card_exp_month=card.exp_month, card_exp_year=card.exp_year, card_saved_at=timezone.now(),
        )
        autorecharge.arm(user_id=user.pk)
    if replaced and replaced != card.payment_method_id:
        _detach_quietly(replaced)
    return True


def remove_card(*, user) -> None:
    """Forget the card here and detach it at Stripe. Raises StripeUnavailable (nothing changed)."""
    customer = card_of(user=user)
    if customer is None:
        return
    stripe.detach_payment_method(payment_method_id=customer.payment_method_id)
    with transaction.atomic():
        StripeCustomer.objects.filter(pk=customer.pk, payment_method_id=customer.payment_method_id).update(
            payment_method_id="", card_brand="", card_last4="", card_exp_month=None, card_exp_year=None,
            card_saved_at=None,
        )
        autorecharge.arm(user_id=user.pk)


def _detach_quietly(payment_method_id: str) -> None:
    # The replaced card is no longer used by us; leaving it attached only clutters the Customer.
    try:
        stripe.detach_payment_method(payment_method_id=payment_method_id)
    except stripe.StripeUnavailable as exc:
        log.warning("could not detach the replaced card %s: %s", payment_method_id, exc)
