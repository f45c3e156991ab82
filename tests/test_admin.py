from decimal import Decimal

import pytest

from accounts.apikeys import create_api_key
from accounts.models import User
from billing import ledger
from billing.models import LedgerEntry, Wallet
from generation.models import Generation
from tests.conftest import generate


@pytest.fixture
def admin_client(client, db):
    admin = User.objects.create_superuser(email="admin@example.com", password="admin password 123")
    client.force_login(admin)
    return client


@pytest.mark.django_db
def test_admin_shows_user_balance_key_prefix_and_ledger_but_never_the_secret(admin_client, alice):
    api_key, full_key = create_api_key(user=alice, name="laptop")
    pages = {
        "users": admin_client.get("/admin/accounts/user/").content.decode(),
        "user": admin_client.get(f"/admin/accounts/user/{alice.pk}/change/").content.decode(),
        "keys": admin_client.get("/admin/accounts/apikey/").content.decode(),
        "key": admin_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/").content.decode(),
        "ledger": admin_client.get("/admin/billing/ledgerentry/").content.decode(),
    }
    assert "alice@example.com" in pages["users"] and "1.000000" in pages["users"]
    assert api_key.prefix in pages["keys"] and "laptop" in pages["keys"]
    assert "1.000000" in pages["ledger"]
    for html in pages.values():
        assert full_key not in html
        assert api_key.hashed_key not in html


@pytest.mark.django_db
def test_ledger_entries_are_read_only_in_the_admin(admin_client, alice):
    entry = LedgerEntry.objects.get(user=alice)
    response = admin_client.post(f"/admin/billing/ledgerentry/{entry.pk}/change/", {"amount": "100"})
    assert response.status_code == 403
    assert admin_client.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("1")


@pytest.mark.django_db
def test_balance_adjustment_action_writes_a_ledger_entry(admin_client, alice, charlie):
    wallet = Wallet.objects.get(user=alice)
    response = admin_client.post("/admin/billing/wallet/", {
        "action": "adjust_balance", "_selected_action": [wallet.pk], "apply": "1",
        "amount": "-0.25", "memo": "goodwill correction",
    })
    assert response.status_code == 302
    assert ledger.balance(user=alice) == Decimal("0.75") == ledger.ledger_sum(user=alice)
    entry = LedgerEntry.objects.filter(user=alice).order_by("-id").first()
    assert entry.kind == "adjustment" and "goodwill correction" in entry.memo
    assert ledger.balance(user=charlie) == Decimal("1")


@pytest.mark.django_db
def test_generations_are_listed_with_their_outcome(admin_client, client, alice_key):
    generate(client, alice_key, {"prompt": "a fox in the snow"})
    generation = Generation.objects.get()
    html = admin_client.get("/admin/generation/generation/").content.decode()
    assert "succeeded" in html and "<img" in html
    html = admin_client.get(f"/admin/generation/generation/{generation.pk}/change/").content.decode()
    assert "a fox in the snow" in html


@pytest.mark.django_db
def test_key_limits_are_set_in_the_admin_and_bad_networks_refused(admin_client, alice):
    api_key, _ = create_api_key(user=alice, name="ci")
    url = f"/admin/accounts/apikey/{api_key.pk}/change/"
    form = {"name": "ci", "expires_at_0": "", "expires_at_1": "", "allowed_networks": "10.0.0.0/8, not-a-network",
            "spend_cap_daily_usd": "1.50", "spend_cap_total_usd": ""}
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "is not an IP address or network" in response.content.decode()
    response = admin_client.post(url, {**form, "allowed_networks": "10.1.2.3/8"})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.allowed_networks == "10.0.0.0/8"
    assert api_key.spend_cap_daily_usd == Decimal("1.5") and api_key.spend_cap_total_usd is None
