"""What an image costs, and the one rule for whether a balance pays for one."""

from decimal import Decimal

from django.conf import settings


def image_price(*, is_test: bool = False, list_price: Decimal | None = None) -> Decimal:
    """USD per image: the model's list price (default ANIMEAPI_PRICE_USD); test keys
    (`ank_test_`) are never charged."""
    if is_test:
        return Decimal("0")
    return settings.ANIMEAPI_PRICE_USD if list_price is None else list_price


def images_affordable(balance: Decimal, *, price: Decimal | None = None) -> int:
    return max(0, int(balance // (price or settings.ANIMEAPI_PRICE_USD)))


def can_afford_an_image(balance: Decimal, *, price: Decimal | None = None) -> bool:
    """The API answers 402 INSUFFICIENT_BALANCE for an image of `price` (default
    ANIMEAPI_PRICE_USD, the default model's price unless GENERATION_MODELS says otherwise)
    exactly when this is False."""
    return balance >= (price or settings.ANIMEAPI_PRICE_USD)
