import threading
import uuid
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from billing import ledger
from billing.models import LedgerEntry
from tests.conftest import make_user

PRICE = Decimal("0.009")


def test_credit_updates_balance_and_ledger_together(alice):
    entry = ledger.credit(user=alice, amount="5", kind=ledger.Kind.TOPUP, reference="cs_test_1")
    assert entry.balance_after == Decimal("6.000000")
    assert ledger.balance(user=alice) == Decimal("6") == ledger.ledger_sum(user=alice)


def test_same_reference_is_booked_once(alice):
    ledger.credit(user=alice, amount="5", kind=ledger.Kind.TOPUP, reference="cs_test_dup")
    with pytest.raises(ledger.DuplicateReference):
        ledger.credit(user=alice, amount="5", kind=ledger.Kind.TOPUP, reference="cs_test_dup")
    assert ledger.balance(user=alice) == Decimal("6")
    assert ledger.ledger_sum(user=alice) == Decimal("6")


def test_reserve_refuses_when_balance_is_short(db):
    bob = make_user("bob@example.com", balance="0.008")
    with pytest.raises(ledger.InsufficientBalance):
        ledger.reserve(user=bob, amount=PRICE, reference="gen:1")
    assert ledger.balance(user=bob) == Decimal("0.008")
    assert not LedgerEntry.objects.filter(kind=ledger.Kind.CHARGE).exists()


def test_refund_gives_a_charge_back_once(alice):
    charge = ledger.reserve(user=alice, amount=PRICE, reference="gen:2")
    assert ledger.balance(user=alice) == Decimal("0.991")
    assert ledger.refund(charge=charge) is not None
    assert ledger.refund(charge=charge) is None
    assert ledger.balance(user=alice) == Decimal("1") == ledger.ledger_sum(user=alice)


def test_debit_may_take_the_balance_negative(alice):
    ledger.debit(user=alice, amount="3", kind=ledger.Kind.PAYMENT_REFUND, reference="re_1")
    assert ledger.balance(user=alice) == Decimal("-2")
    with pytest.raises(ledger.InsufficientBalance):
        ledger.reserve(user=alice, amount=PRICE, reference="gen:3")


def test_users_balances_are_separate(alice, charlie):
    ledger.reserve(user=alice, amount="0.5", reference="gen:a")
    assert ledger.balance(user=alice) == Decimal("0.5")
    assert ledger.balance(user=charlie) == Decimal("1")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
def test_database_refuses_to_edit_or_delete_entries(alice):
    entry = LedgerEntry.objects.filter(user=alice).get()
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("100"))
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    assert ledger.balance(user=alice) == ledger.ledger_sum(user=alice) == Decimal("1")


@pytest.mark.django_db(transaction=True)
def test_100_concurrent_reservations_with_money_for_50_give_exactly_50():
    assert connection.vendor == "postgresql", "this test is about PostgreSQL's concurrency"
    user = make_user("rush@example.com", balance=PRICE * 50)
    start = threading.Barrier(100)
    outcomes = []

    def spend(i):
        start.wait()
        try:
            ledger.reserve(user=user, amount=PRICE, reference=f"gen:rush:{i}")
            outcomes.append("charged")
        except ledger.InsufficientBalance:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("charged") == 50
    assert outcomes.count("refused") == 50
    assert ledger.balance(user=user) == Decimal("0")
    assert ledger.ledger_sum(user=user) == Decimal("0")
    assert LedgerEntry.objects.filter(user=user, kind=ledger.Kind.CHARGE).count() == 50


operations = st.lists(
    st.one_of(
        st.tuples(st.just("credit"), st.decimals(min_value="0.000001", max_value="50", places=6)),
        st.tuples(st.just("reserve"), st.decimals(min_value="0.000001", max_value="5", places=6)),
        st.tuples(st.just("refund"), st.integers(min_value=0, max_value=30)),
    ),
    max_size=30,
)


@pytest.mark.django_db
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_balance_always_equals_ledger_sum_and_never_goes_negative(ops):
    user = make_user(f"prop-{uuid.uuid4().hex}@example.com")
    charges = []
    for op, value in ops:
        if op == "credit":
            ledger.credit(user=user, amount=value, kind=ledger.Kind.TOPUP, reference=f"prop:{uuid.uuid4()}")
        elif op == "reserve":
            try:
                charges.append(ledger.reserve(user=user, amount=value, reference=f"prop:{uuid.uuid4()}"))
            except ledger.InsufficientBalance:
                pass
        elif charges:
            ledger.refund(charge=charges[value % len(charges)])
        balance = ledger.balance(user=user)
        assert balance == ledger.ledger_sum(user=user)
        assert balance >= 0
