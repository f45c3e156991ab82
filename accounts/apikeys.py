"""Creating, finding, revoking and authenticating API keys."""

import datetime
import hmac
import ipaddress
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from . import keys
from .models import ApiKey, ApiKeyDailySpend, User, new_webhook_secret

# last_used_at is a hint for the user, not an audit log: write it at most once a minute per key.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


class TooManyKeys(Exception):
    pass


class KeySpendCapReached(Exception):
    pass


def create_api_key(*, user: User, name: str = "", test: bool = False, **limits) -> tuple[ApiKey, str]:
    """Return the new key row and the full key, which exists only in this return value."""
    with transaction.atomic():
        # Lock the user row so two concurrent creations cannot both pass the count check.
        User.objects.select_for_update().filter(pk=user.pk).first()
        if user.api_keys.live().count() >= settings.ANIMEAPI_MAX_KEYS_PER_USER:
            raise TooManyKeys(f"At most {settings.ANIMEAPI_MAX_KEYS_PER_USER} live keys per account")
        full_key = keys.generate_key(test=test)
        api_key = ApiKey.objects.create(
            user=user,
            name=name.strip()[:100],
            prefix=keys.visible_prefix(full_key),
            hashed_key=keys.hash_key(full_key),
            is_test=test,
            **limits,
        )
    return api_key, full_key


def revoke_api_key(*, api_key: ApiKey) -> bool:
    """Revoke once; return False when it was already revoked."""
    return bool(
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    )


def find_by_key_or_prefix(key_or_prefix: str) -> list[ApiKey]:
    if keys.is_well_formed(key_or_prefix):
        return list(ApiKey.objects.filter(hashed_key=keys.hash_key(key_or_prefix)))
    return list(ApiKey.objects.filter(prefix=key_or_prefix))


def authenticate_key(raw_key: str) -> ApiKey | None:
    """The live key for this secret, or None. Malformed keys never reach the database."""
    if not keys.is_well_formed(raw_key):
        return None
    digest = keys.hash_key(raw_key)
    api_key = ApiKey.objects.select_related("user").filter(hashed_key=digest).first()
    # The index lookup finds the row; the constant-time compare keeps the final check free of
    # timing signal even if the lookup ever became a prefix or partial match.
    if api_key is None or not hmac.compare_digest(api_key.hashed_key, digest):
        return None
    if api_key.is_revoked or not api_key.user.is_active:
        return None
    touch_last_used(api_key)
    return api_key


def touch_last_used(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    # Conditional, so concurrent requests of the same minute write once between them.
    ApiKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gte=now - LAST_USED_RESOLUTION).update(
        last_used_at=now
    )
    api_key.last_used_at = now


def network_allows(api_key: ApiKey, ip: str) -> bool:
    """True when the key has no allow-list or `ip` is inside one of its networks."""
    networks = [item.strip() for item in api_key.allowed_networks.split(",") if item.strip()]
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def validate_networks(value: str) -> str:
    """Normalise a comma-separated list of networks; ValueError names the bad one."""
    networks = []
    for item in value.split(","):
        if item.strip():
            try:
                networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{item.strip()!r} is not an IP address or network") from None
    return ", ".join(networks)


def add_key_spend(*, api_key: ApiKey, amount: Decimal, day: datetime.date) -> None:
    """Count a charge against the key's caps, in the caller's transaction; raises
    KeySpendCapReached when it would pass one. Conditional UPDATEs, so concurrent requests
    cannot overshoot a cap."""
    total = Q(spend_cap_total_usd__isnull=True) | Q(spend_cap_total_usd__gte=F("spent_total_usd") + amount)
    if not ApiKey.objects.filter(Q(pk=api_key.pk) & total).update(spent_total_usd=F("spent_total_usd") + amount):
        raise KeySpendCapReached()
    if api_key.spend_cap_daily_usd is None:
        return
    counter = _daily_counter(api_key=api_key, day=day)
    if not ApiKeyDailySpend.objects.filter(
        pk=counter.pk, spent_usd__lte=api_key.spend_cap_daily_usd - amount
    ).update(spent_usd=F("spent_usd") + amount):
        raise KeySpendCapReached()


def remove_key_spend(*, api_key_id: int, amount: Decimal, day: datetime.date) -> None:
    """Give back a refunded charge's share of the key's caps. The daily counter exists only while
    the key has a daily cap, so a charge made before the cap was set was never counted in it: it
    never goes below zero, which would let the key spend past its cap."""
    ApiKey.objects.filter(pk=api_key_id).update(spent_total_usd=F("spent_total_usd") - amount)
    ApiKeyDailySpend.objects.filter(api_key_id=api_key_id, day=day).update(
        spent_usd=Greatest(F("spent_usd") - amount, Value(Decimal("0"))))


def _daily_counter(*, api_key: ApiKey, day: datetime.date) -> ApiKeyDailySpend:
    counter = ApiKeyDailySpend.objects.filter(api_key=api_key, day=day).first()
    if counter is None:
        with transaction.atomic():
            counter, _ = ApiKeyDailySpend.objects.get_or_create(api_key=api_key, day=day)
    return counter


LIMIT_FIELDS = ("spend_cap_daily_usd", "spend_cap_total_usd", "expires_at", "allowed_networks")


def set_key_limits(*, api_key: ApiKey, **limits) -> bool:
    """Store `limits` (any of LIMIT_FIELDS) on a live key; False when the key was revoked meanwhile.

    An UPDATE of these columns only: `save()` would also write back the spent_total_usd read with
    the row and undo the charges counted since.
    """
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"not a key limit: {', '.join(sorted(unknown))}")
    updated = ApiKey.objects.live().filter(pk=api_key.pk).update(**limits)
    for field, value in limits.items():
        setattr(api_key, field, value)
    return bool(updated)


def rotate_webhook_secret(*, user: User) -> str:
    """Give the user a new webhook secret and return it; the old one signs nothing from now on.

    Deliveries read the secret when they are sent, so retries of earlier webhooks use the new one.
    """
    secret = new_webhook_secret()
    User.objects.filter(pk=user.pk).update(webhook_secret=secret)
    user.webhook_secret = secret
    return secret
