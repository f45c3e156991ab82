from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import keys
from accounts.apikeys import authenticate_key
from accounts.models import ApiKey, User
from billing import ledger
from billing.models import LedgerEntry


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
