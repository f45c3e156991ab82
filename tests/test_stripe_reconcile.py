import time
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing import ledger, topups
from billing.models import LedgerEntry, TopUp
from tests.test_stripe_standin import (  # noqa: F401  (fixtures: stripe_api, fast_password_hashing)
    checkout_session,
    fast_password_hashing,
    payment_intent_with_receipt,
    stripe_api,
    stripe_error,
    stripe_list,
)

SESSIONS_PATH = "/v1/checkout/sessions"
PAGE_SIZE = 2  # smaller than the command's limit, so the library has to follow `has_more`


def serve_sessions(standin, sessions):
    """Stripe's list endpoint, newest first, paged with starting_after."""

    def list_sessions(request):
        start = 0
        if "starting_after" in request.query:
            start = [s["id"] for s in sessions].index(request.query["starting_after"]) + 1
        page = sessions[start:start + PAGE_SIZE]
        return 200, stripe_list(SESSIONS_PATH, page, has_more=start + PAGE_SIZE < len(sessions))

    standin.route("GET", SESSIONS_PATH, list_sessions)


def reconcile(*args):
    out = StringIO()
    call_command("stripe_reconcile", *args, stdout=out)
    return out.getvalue()


def test_reconcile_books_what_no_webhook_booked_once(alice, charlie, stripe_api):
    # Alice: one top-up the webhook never booked, one it did. Charlie: a paid session whose
    # row was never stored. Plus one unpaid session and one from another product on the account.
    TopUp.objects.create(user=alice, checkout_session_id="cs_missed", amount=Decimal("10"))
    TopUp.objects.create(user=alice, checkout_session_id="cs_booked", amount=Decimal("5"))
    booked = checkout_session(user=alice, session_id="cs_booked", amount_cents=500)
    assert topups.book_paid_session(session=booked).outcome == "booked"
    sessions = [
        checkout_session(user=alice, session_id="cs_missed", amount_cents=1000),
        booked,
        checkout_session(user=charlie, session_id="cs_charlie_no_row", amount_cents=2500),
        checkout_session(user=alice, session_id="cs_unpaid", amount_cents=5000, payment_status="unpaid"),
        checkout_session(user=alice, session_id="cs_other_product", amount_cents=9900, ours=False),
    ]
    serve_sessions(stripe_api, sessions)
    stripe_api.route("GET", "/v1/payment_intents/pi_for_cs_missed",
                     payment_intent_with_receipt("pi_for_cs_missed", "https://pay.stripe.com/receipts/missed"))

    first = reconcile("--since", "7")
    second = reconcile("--since", "7")

    assert "booked 2, already booked 1, not top-ups of ours 1" in first
    assert "booked 0, already booked 3, not top-ups of ours 1" in second
    assert ledger.balance(user=alice) == Decimal("16") == ledger.ledger_sum(user=alice)
    assert ledger.balance(user=charlie) == Decimal("26") == ledger.ledger_sum(user=charlie)
    assert sorted(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.TOPUP).values_list("reference", flat=True)) == [
        "cs_booked", "cs_charlie_no_row", "cs_missed",
    ]
    missed = TopUp.objects.get(checkout_session_id="cs_missed")
    assert (missed.status, missed.receipt_url) == (TopUp.Status.PAID, "https://pay.stripe.com/receipts/missed")
    assert TopUp.objects.get(checkout_session_id="cs_charlie_no_row").user == charlie
    assert not TopUp.objects.filter(checkout_session_id__in=["cs_unpaid", "cs_other_product"]).exists()

    listings = stripe_api.requests_to("GET", SESSIONS_PATH)
    assert len(listings) == 2 * 3  # three pages, two runs
    first_page = listings[0].query
    assert first_page["status"] == "complete"
    assert first_page["limit"] == "100"
    assert abs(int(first_page["created[gte]"]) - (time.time() - 7 * 86400)) < 60
    assert listings[1].query["starting_after"] == "cs_booked"


def test_reconcile_fills_a_missing_receipt_link(alice, stripe_api):
    TopUp.objects.create(user=alice, checkout_session_id="cs_no_receipt", amount=Decimal("10"))
    session = checkout_session(user=alice, session_id="cs_no_receipt", payment_intent="pi_no_receipt")
    stripe_api.route("GET", "/v1/payment_intents/pi_no_receipt", lambda request: (400, stripe_error("try later")))
    assert topups.book_paid_session(session=session).outcome == "booked"
    assert TopUp.objects.get().receipt_url == ""
    serve_sessions(stripe_api, [session])
    stripe_api.route("GET", "/v1/payment_intents/pi_no_receipt",
                     payment_intent_with_receipt("pi_no_receipt", "https://pay.stripe.com/receipts/late"))

    output = reconcile()

    assert "booked 0, already booked 1" in output
    assert "receipt links filled 1" in output
    assert TopUp.objects.get().receipt_url == "https://pay.stripe.com/receipts/late"
    assert ledger.balance(user=alice) == Decimal("11")


def test_reconcile_looks_back_30_days_by_default(alice, stripe_api):
    serve_sessions(stripe_api, [])

    assert "Checked 0 paid session(s) from the last 30 day(s)" in reconcile()
    [listing] = stripe_api.requests_to("GET", SESSIONS_PATH)
    assert abs(int(listing.query["created[gte]"]) - (time.time() - 30 * 86400)) < 60


def test_reconcile_reports_stripe_errors(alice, stripe_api):
    stripe_api.route("GET", SESSIONS_PATH, lambda request: (401, stripe_error("Invalid API Key")))

    with pytest.raises(CommandError, match="Invalid API Key"):
        reconcile()
    assert ledger.balance(user=alice) == Decimal("1")


def test_reconcile_needs_a_secret_key(db, settings):
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY"):
        reconcile()


@pytest.mark.parametrize("days", ["0", "-3", "week"])
def test_reconcile_refuses_a_bad_since(stripe_api, days):
    with pytest.raises(CommandError):
        reconcile("--since", days)
