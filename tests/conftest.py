import os
from decimal import Decimal

import pytest
from django.conf import settings

from accounts.apikeys import create_api_key
from accounts.models import User
from billing import ledger

# Under CI the real services are required: a test run without them fails, it never skips.
if os.environ.get("CI") == "true":
    assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), "CI must run on PostgreSQL"
    assert settings.REDIS_URL, "CI must run with REDIS_URL"


@pytest.fixture(autouse=True)
def _clean_redis():
    """Each test starts with empty limits and cache (the test Redis database only)."""
    from django.core.cache import cache

    cache.clear()
    yield


def make_user(email="alice@example.com", *, balance="0", password="correct horse battery"):
    user = User.objects.create_user(email=email, password=password)
    if Decimal(balance) > 0:
        ledger.credit(user=user, amount=Decimal(balance), kind=ledger.Kind.ADJUSTMENT, reference=f"test-seed:{email}")
    return user


@pytest.fixture
def alice(db):
    return make_user("alice@example.com", balance="1")


@pytest.fixture
def charlie(db):
    """A second user whose data must never show up for alice."""
    return make_user("charlie@example.com", balance="1")


@pytest.fixture
def alice_key(alice):
    _, full_key = create_api_key(user=alice, name="alice's key")
    return full_key


@pytest.fixture
def charlie_key(charlie):
    _, full_key = create_api_key(user=charlie, name="charlie's key")
    return full_key
