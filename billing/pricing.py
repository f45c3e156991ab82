"""What an image costs, and the one rule for whether a balance pays for one."""

from decimal import Decimal

from django.conf import settings


def image_price(*, is_test: bool = False) -> Decimal:
    """USD per image; test keys (`ank_test_`) are never charged."""
    return Decimal("0") if is_test else settings.ANIMEAPI_PRICE_USD


def images_affordable(balance: Decimal) -> int:
    return max(0, int(balance // settings.ANIMEAPI_PRICE_USD))


def can_afford_an_image(balance: Decimal) -> bool:
    """The API answers 402 INSUFFICIENT_BALANCE exactly when this is False."""
    return balance >= settings.ANIMEAPI_PRICE_USD
