from decimal import Decimal

import pytest
from django.core import mail

from accounts.apikeys import create_api_key
from billing import ledger
from billing.models import Wallet
from tests.conftest import generate, make_user

PRICE = Decimal("0.009")


@pytest.fixture
def spender(db):
    user = make_user("spender@example.com", balance="0.05")
    _, key = create_api_key(user=user)
    return user, key


def spend(client, key, times, capture):
    for _ in range(times):
        with capture(execute=True):
            assert generate(client, key).status_code == 200


@pytest.mark.django_db
def test_one_email_per_crossing_and_topping_up_rearms_it(client, spender, django_capture_on_commit_callbacks):
    user, key = spender
    client.force_login(user)
    response = client.post("/billing/alerts/", {"threshold": "0.03"})
    assert response.status_code == 303
    assert Wallet.objects.get(user=user).low_balance_threshold == Decimal("0.03")

    spend(client, key, 2, django_capture_on_commit_callbacks)  # 0.050 -> 0.032: still above
    assert mail.outbox == []
    spend(client, key, 1, django_capture_on_commit_callbacks)  # -> 0.023: crosses 0.03
    spend(client, key, 1, django_capture_on_commit_callbacks)  # -> 0.014: already below
    assert [m.subject for m in mail.outbox] == ["Your AnimeAPI balance is running low"]
    assert mail.outbox[0].to == [user.email] and "$0.02" in mail.outbox[0].body
    assert "below your $0.03 alert" in client.get("/billing/").content.decode()

    ledger.credit(user=user, amount="1", kind=ledger.Kind.TOPUP, reference="cs_rearm")
    assert "below your" not in client.get("/billing/").content.decode()
    ledger.debit(user=user, amount="0.99", kind=ledger.Kind.ADJUSTMENT, reference="adj_down")
    assert len(mail.outbox) == 1  # debit outside on_commit capture: mail is sent on commit only
    with django_capture_on_commit_callbacks(execute=True):
        ledger.debit(user=user, amount="0.001", kind=ledger.Kind.ADJUSTMENT, reference="adj_down_2")
    assert len(mail.outbox) == 1  # already below since the previous debit; no second mail


@pytest.mark.django_db
def test_running_out_sends_its_own_email(client, spender, django_capture_on_commit_callbacks):
    user, key = spender
    spend(client, key, 5, django_capture_on_commit_callbacks)  # 0.050 -> 0.005: below one image
    assert [m.subject for m in mail.outbox] == ["Your AnimeAPI balance has run out"]
    assert generate(client, key).status_code == 402
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_alert_form_refuses_nonsense_and_can_be_turned_off(client, alice):
    client.force_login(alice)
    response = client.post("/billing/alerts/", {"threshold": "-5"})
    assert response.status_code == 400
    assert "greater than or equal to 0" in response.content.decode()
    client.post("/billing/alerts/", {"threshold": "2"})
    assert Wallet.objects.get(user=alice).low_balance_threshold == Decimal("2")
    client.post("/billing/alerts/", {"threshold": ""})
    assert Wallet.objects.get(user=alice).low_balance_threshold is None


@pytest.mark.django_db
def test_alert_settings_need_login_and_csrf(alice):
    from django.test import Client

    assert Client().post("/billing/alerts/", {"threshold": "1"}).status_code == 302
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/billing/alerts/", {"threshold": "1"}).status_code == 403
