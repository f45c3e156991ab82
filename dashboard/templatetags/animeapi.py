"""Filters the dashboard's templates share: money, durations, image links."""

from decimal import Decimal

from django import template

from generation import images

register = template.Library()


@register.filter
def usd(amount) -> str:
    """$12.50, $0.009, -$0.009: cents always, sub-cent digits only when there are any (at most 6)."""
    if amount is None or amount == "":
        return ""
    amount = Decimal(str(amount)).quantize(Decimal("0.000001"))
    sign = "-" if amount < 0 else ""
    whole, _, fraction = f"{abs(amount):,.6f}".partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{fraction}"


@register.filter
def duration(milliseconds) -> str:
    """850 ms, 4.2 s."""
    if milliseconds is None or milliseconds == "":
        return "—"
    milliseconds = int(milliseconds)
    return f"{milliseconds} ms" if milliseconds < 1000 else f"{milliseconds / 1000:.1f} s"


@register.filter
def image_src(generation) -> str:
    """The generation's stored WEBP, or "" when it has none (failed, or still running)."""
    return images.image_url(generation.image) if generation.image else ""


@register.filter
def wait(seconds) -> str:
    """How long to wait, for people: 45 seconds, 3 minutes, 2 h 5 min."""
    if seconds is None or seconds == "":
        return "a moment"
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} minutes"
    return f"{minutes // 60} h {minutes % 60} min"
