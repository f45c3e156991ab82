"""Admin saves under live traffic: a change form writes only what it edits, so charges, top-ups,
spend counters and revocations committed while it was open survive it."""

import threading
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client, RequestFactory

from accounts.admin import ApiKeyAdmin, UserAdmin
from accounts.apikeys import create_api_key, revoke_api_key
from accounts.apikeys import rotate_webhook_secret
from accounts.models import ApiKey, User
from billing import ledger
from billing.admin import WalletAdmin
from billing.models import Wallet
from generation.charging import GenerationParams, start_generation
from tests.conftest import make_user

PRICE = Decimal("0.009")
# Columns that only billing code, key authentication or their owner may write.
MONEY_COUNTERS_AND_REVOCATION = {"balance", "amount", "balance_after", "spent_total_usd", "spent_usd", "cost_usd",
                                 "backend_cost_usd", "revoked_at", "last_used_at", "webhook_secret"}


def in_another_connection(work):
    """Run `work` in a thread (its own database connection, committed on its own) and wait."""
    errors = []

    def run():
        try:
            work()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def meanwhile(monkeypatch, admin_class, work):
    """Commit `work` from another connection right after the admin's change view has read the
    row it is about to save: the form was open while a charge, a top-up or a revocation landed."""
    read_row = admin_class.get_object

    def get_object(self, request, object_id, from_field=None):
        obj = read_row(self, request, object_id, from_field)
        if request.method == "POST":
            in_another_connection(work)
        return obj

    monkeypatch.setattr(admin_class, "get_object", get_object)


def charge(api_key):
    """One real charge as /api/generate makes it: a Generation, its ledger entry, the key's counters."""
    return start_generation(user=api_key.user, api_key=api_key, params=GenerationParams(prompt="anime girl"))


def key_form(api_key, **changes):
    return {"name": api_key.name, "expires_at_0": "", "expires_at_1": "", "allowed_networks": "",
            "spend_cap_daily_usd": api_key.spend_cap_daily_usd or "", "spend_cap_total_usd": api_key.spend_cap_total_usd or "",
            **changes}


def staff_client():
    admin = User.objects.filter(email="admin@example.com").first() or User.objects.create_superuser(
        email="admin@example.com", password="admin password 123")
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def alice(transactional_db):
    return make_user("alice@example.com", balance="10")


@pytest.fixture
def charlie(transactional_db):
    return make_user("charlie@example.com", balance="1")


@pytest.fixture
def alice_api_key(alice):
    api_key, _ = create_api_key(user=alice, name="laptop", spend_cap_daily_usd=Decimal("5"))
    return api_key


def test_a_wallet_save_keeps_the_charges_and_top_ups_made_while_its_form_was_open(monkeypatch, alice, alice_api_key,
                                                                                  charlie):
    def traffic():
        charge(alice_api_key)
        ledger.credit(user=alice, amount=Decimal("5"), kind=ledger.Kind.TOPUP, reference="cs_test_meanwhile")

    meanwhile(monkeypatch, WalletAdmin, traffic)
    wallet = Wallet.objects.get(user=alice)
    response = staff_client().post(f"/admin/billing/wallet/{wallet.pk}/change/", {"low_balance_threshold": "2.50"})

    assert response.status_code == 302
    wallet.refresh_from_db()
    assert wallet.low_balance_threshold == Decimal("2.50")
    assert wallet.balance == Decimal("10") - PRICE + Decimal("5") == ledger.ledger_sum(user=alice)
    assert ledger.balance(user=charlie) == Decimal("1")


def test_a_wallet_form_cannot_set_the_balance(alice):
    wallet = Wallet.objects.get(user=alice)
    response = staff_client().post(f"/admin/billing/wallet/{wallet.pk}/change/",
                                   {"low_balance_threshold": "", "balance": "1000"})
    assert response.status_code == 302
    assert ledger.balance(user=alice) == Decimal("10") == ledger.ledger_sum(user=alice)


def test_a_key_save_keeps_the_spend_counted_while_its_form_was_open(monkeypatch, alice, alice_api_key):
    meanwhile(monkeypatch, ApiKeyAdmin, lambda: [charge(alice_api_key) for _ in range(3)])
    response = staff_client().post(f"/admin/accounts/apikey/{alice_api_key.pk}/change/",
                                   key_form(alice_api_key, name="renamed", spend_cap_total_usd="1.00"))

    assert response.status_code == 302
    alice_api_key.refresh_from_db()
    assert alice_api_key.name == "renamed" and alice_api_key.spend_cap_total_usd == Decimal("1.00")
    assert alice_api_key.spent_total_usd == 3 * PRICE
    assert alice_api_key.daily_spend.get().spent_usd == 3 * PRICE
    assert ledger.balance(user=alice) == Decimal("10") - 3 * PRICE == ledger.ledger_sum(user=alice)


def test_a_key_revoked_by_its_owner_while_the_admin_form_was_open_stays_revoked(monkeypatch, alice, alice_api_key):
    meanwhile(monkeypatch, ApiKeyAdmin, lambda: revoke_api_key(api_key=ApiKey.objects.get(pk=alice_api_key.pk)))
    response = staff_client().post(f"/admin/accounts/apikey/{alice_api_key.pk}/change/",
                                   key_form(alice_api_key, name="renamed"))

    assert response.status_code == 302
    alice_api_key.refresh_from_db()
    assert alice_api_key.revoked_at is not None
    assert alice_api_key.name == "renamed"


def test_a_key_form_cannot_write_revocation_or_spend(alice, alice_api_key):
    revoke_api_key(api_key=alice_api_key)
    response = staff_client().post(f"/admin/accounts/apikey/{alice_api_key.pk}/change/",
                                   key_form(alice_api_key, revoked_at_0="", revoked_at_1="", spent_total_usd="0"))
    assert response.status_code == 302
    alice_api_key.refresh_from_db()
    assert alice_api_key.revoked_at is not None and alice_api_key.spent_total_usd == 0


def test_a_user_save_keeps_the_webhook_secret_rotated_while_its_form_was_open(monkeypatch, alice):
    rotated = []
    meanwhile(monkeypatch, UserAdmin, lambda: rotated.append(rotate_webhook_secret(user=User.objects.get(pk=alice.pk))))
    response = staff_client().post(f"/admin/accounts/user/{alice.pk}/change/", {
        "email": alice.email, "first_name": "Alice", "last_name": "", "is_active": "on",
    })
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.first_name == "Alice"
    assert alice.webhook_secret == rotated[0]


def test_no_admin_form_can_edit_money_counters_or_revocation(alice, alice_api_key):
    charge(alice_api_key)
    request = RequestFactory().get("/admin/")
    request.user = User.objects.create_superuser(email="admin@example.com", password="admin password 123")
    for model, model_admin in admin.site._registry.items():
        obj = model.objects.first()
        if not model_admin.has_change_permission(request, obj):
            continue
        form = model_admin.get_form(request, obj, change=obj is not None)
        assert not set(form.base_fields) & MONEY_COUNTERS_AND_REVOCATION, model
