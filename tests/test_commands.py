import os
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts import keys
from accounts.apikeys import authenticate_key
from accounts.models import ApiKey, User
from billing import ledger
from billing.models import LedgerEntry


REPO = Path(__file__).resolve().parent.parent


def manage(*args) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` as an operator types it, on the test database."""
    db = connection.settings_dict
    env = dict(os.environ)
    if db["ENGINE"].endswith("postgresql"):
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_createapikey_creates_user_credits_and_prints_key_last():
    out, _ = run("createapikey", "Me@Example.com", "--name", "laptop", "--credit", "5")
    full_key = out.strip().splitlines()[-1]
    assert keys.is_well_formed(full_key) and full_key.startswith("ank_")
    user = User.objects.get(email="me@example.com")
    assert ledger.balance(user=user) == Decimal("5.000000")
    entry = LedgerEntry.objects.get(user=user)
    assert entry.amount == Decimal("5.000000")
    api_key = ApiKey.objects.get(user=user)
    assert api_key.name == "laptop"
    assert authenticate_key(full_key) == api_key


@pytest.mark.django_db
def test_createapikey_reuses_existing_user(alice):
    run("createapikey", "ALICE@example.com")
    assert User.objects.count() == 1
    assert alice.api_keys.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    (["not-an-email"], "Not a valid e-mail"),
    (["x@example.com", "--credit", "-1"], "zero or a positive"),
    (["x@example.com", "--credit", "lots"], "number of USD"),
    (["x@example.com", "--credit", "1e999999"], "below 1000000000000"),
])
def test_createapikey_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("createapikey", *args)
    assert not User.objects.exists()


@pytest.mark.django_db
def test_revokeapikey_by_prefix_and_by_key(alice):
    out, _ = run("createapikey", alice.email)
    first = out.strip().splitlines()[-1]
    out, _ = run("createapikey", alice.email)
    second = out.strip().splitlines()[-1]

    run("revokeapikey", keys.visible_prefix(first))
    run("revokeapikey", second)
    assert authenticate_key(first) is None
    assert authenticate_key(second) is None


@pytest.mark.django_db
def test_revokeapikey_unknown():
    with pytest.raises(CommandError, match="No key matches"):
        run("revokeapikey", "ank_nothing")


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    (["createapikey", "not-an-email", "--credit", "-3"], "CommandError: Not a valid e-mail address: 'not-an-email'"),
    (["createapikey", "x@example.com", "--credit", "-3"], "CommandError: --credit must be zero or a positive number of USD"),
    (["createapikey", "x@example.com", "--credit", "lots"], "CommandError: --credit must be a number of USD, got 'lots'"),
    (["revokeapikey", "ank_nothing"], "CommandError: No key matches"),
    (["revokeapikey", ""], "CommandError: No key matches"),
    (["stripe_reconcile", "--since", "-3"], "CommandError: --since must be at least 1 day"),
])
def test_bad_command_input_is_one_line_on_stderr_and_exit_status_1(args, message):
    process = manage(*args)
    assert process.returncode == 1
    assert process.stderr.splitlines() == [message]
    assert process.stdout == ""
    assert not User.objects.exists()
