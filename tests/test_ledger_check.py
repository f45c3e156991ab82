"""`manage.py ledger_check`: balances against the ledger, key counters against charges; clean after
admin saves raced real charges and top-ups, loud (exit 1) when a row was corrupted."""

import datetime
import logging
import os
import subprocess
import sys
import threading
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from accounts.apikeys import create_api_key
from accounts.models import ApiKey, ApiKeyDailySpend, User
from billing import ledger
from billing.models import Wallet
from generation.integrity import money_differences
from generation.models import Generation
from generation.charging import GenerationParams, fail_generation, start_generation
from generation.tasks import check_ledger
from tests.conftest import make_user

REPO = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.009")


def ledger_check():
    """Run the command in-process: (stdout, CommandError message or None)."""
    out = StringIO()
    try:
        call_command("ledger_check", stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def ledger_check_process() -> subprocess.CompletedProcess:
    """Run `python manage.py ledger_check` as an operator would, on the test database."""
    db = connection.settings_dict
    env = {**os.environ,
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"}
    return subprocess.run([sys.executable, "manage.py", "ledger_check"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def charge(api_key):
    return start_generation(user=api_key.user, api_key=api_key, params=GenerationParams(prompt="anime girl"))


def run_threads(*workers):
    """Start every worker in its own thread (its own connection), wait for all, re-raise the first error."""
    errors = []

    def run(work):
        try:
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def alice(transactional_db):
    return make_user("alice@example.com", balance="10")


@pytest.fixture
def charlie(transactional_db):
    return make_user("charlie@example.com", balance="1")


@pytest.fixture
def alice_api_key(alice):
    api_key, _ = create_api_key(user=alice, name="laptop", spend_cap_daily_usd=Decimal("8"))
    return api_key


def test_admin_saves_racing_charges_and_top_ups_leave_the_books_clean(alice, alice_api_key, charlie):
    """Through the admin's real change views, in threads, while charges, refunds and top-ups land."""
    admin = User.objects.create_superuser(email="admin@example.com", password="admin password 123")
    wallet = Wallet.objects.get(user=alice)
    test_key, _ = create_api_key(user=alice, name="ci", test=True)
    rounds = 25

    def admin_saves(label):
        def work():
            client = Client()
            client.force_login(admin)
            for i in range(rounds):
                response = client.post(f"/admin/billing/wallet/{wallet.pk}/change/",
                                       {"low_balance_threshold": f"{i % 3}.00"})
                assert response.status_code == 302, response.content[:500]
                response = client.post(f"/admin/accounts/apikey/{alice_api_key.pk}/change/", {
                    "name": f"{label} {i}", "expires_at_0": "", "expires_at_1": "", "allowed_networks": "",
                    "spend_cap_daily_usd": "8", "spend_cap_total_usd": "",
                })
                assert response.status_code == 302, response.content[:500]
        return work

    def charges():
        for i in range(rounds):
            generation = charge(alice_api_key)
            if i % 4 == 0:  # a failure: refunded, and the key's counters given back
                fail_generation(generation_id=generation.id, code="GENERATION_FAILED", detail="test")
            charge(test_key)

    def top_ups(label):
        def work():
            for i in range(rounds):
                ledger.credit(user=alice, amount=Decimal("0.50"), kind=ledger.Kind.TOPUP,
                              reference=f"cs_test_{label}_{i}")
        return work

    run_threads(admin_saves("a"), admin_saves("b"), charges, charges, top_ups("x"), top_ups("y"))

    alice_api_key.refresh_from_db()
    charged = 2 * (rounds - len(range(0, rounds, 4)))
    assert alice_api_key.spent_total_usd == charged * PRICE
    assert ledger.balance(user=alice) == Decimal("10") - charged * PRICE + 2 * rounds * Decimal("0.50")
    assert ledger.balance(user=alice) == ledger.ledger_sum(user=alice)
    assert money_differences() == []
    out, error = ledger_check()
    assert error is None and "no differences" in out
    process = ledger_check_process()
    assert process.returncode == 0, process.stdout + process.stderr


def test_a_refunded_charge_and_a_test_key_leave_the_books_clean(alice, alice_api_key):
    fail_generation(generation_id=charge(alice_api_key).id, code="GENERATION_FAILED")
    charge(alice_api_key)
    test_key, _ = create_api_key(user=alice, name="ci", test=True)
    charge(test_key)
    assert Generation.objects.count() == 3
    out, error = ledger_check()
    assert error is None
    assert out == "Checked 1 wallet(s) and 2 key(s): no differences.\n"


def test_a_corrupted_balance_makes_ledger_check_fail(alice, charlie):
    Wallet.objects.filter(user=alice).update(balance=Decimal("81"))
    out, error = ledger_check()
    assert error == "1 difference(s) in 2 wallet(s) and 0 key(s)"
    assert out == ("wallet of alice@example.com: 81.000000 recorded, its ledger entries add up to 10.000000 "
                   "(off by +71.000000)\n")
    process = ledger_check_process()
    assert process.returncode == 1
    assert "wallet of alice@example.com" in process.stdout and "Traceback" not in process.stderr


def test_corrupted_key_counters_make_ledger_check_fail(alice, alice_api_key, charlie):
    charge(alice_api_key)
    charge(alice_api_key)
    ApiKey.objects.filter(pk=alice_api_key.pk).update(spent_total_usd=PRICE)  # one charge rolled back
    ApiKeyDailySpend.objects.filter(api_key=alice_api_key).update(spent_usd=Decimal("1"))
    out, error = ledger_check()
    assert error == "2 difference(s) in 2 wallet(s) and 1 key(s)"
    today = datetime.datetime.now(datetime.UTC).date()
    assert out.splitlines() == [
        f"key {alice_api_key.prefix} (id {alice_api_key.pk}, alice@example.com) total spend: 0.009000 recorded, "
        "its generations' charges add up to 0.018000 (off by -0.009000)",
        f"key {alice_api_key.prefix} (id {alice_api_key.pk}, alice@example.com) spend on {today:%Y-%m-%d}: "
        "1.000000 recorded, its generations' charges that day add up to 0.018000 (off by +0.982000)",
    ]


def test_a_daily_counter_started_after_the_day_s_first_charges_is_not_a_difference(alice):
    """The daily counter exists only while the key has a daily cap: it may count less than the day."""
    api_key, _ = create_api_key(user=alice, name="no cap yet")
    charge(api_key)
    ApiKey.objects.filter(pk=api_key.pk).update(spend_cap_daily_usd=Decimal("1"))
    charge(ApiKey.objects.get(pk=api_key.pk))
    assert ApiKeyDailySpend.objects.get(api_key=api_key).spent_usd == PRICE
    assert money_differences() == []


def test_the_daily_beat_task_logs_each_difference(alice, charlie, caplog):
    assert settings.CELERY_BEAT_SCHEDULE["ledger-check"]["task"] == check_ledger.name
    assert check_ledger() == 0
    Wallet.objects.filter(user=charlie).update(balance=Decimal("0"))
    with caplog.at_level(logging.ERROR, logger="generation.tasks"):
        assert check_ledger.delay().get(disable_sync_subtasks=False) == 1
    assert [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR] == [
        "ledger check: wallet of charlie@example.com: 0.000000 recorded, its ledger entries add up to 1.000000 "
        "(off by -1.000000)"
    ]
