from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import stripe, topups


def _days(value):
    try:
        days = int(value)
    except ValueError:
        raise CommandError(f"--since must be a whole number of days, got {value!r}") from None
    if days < 1:
        raise CommandError("--since must be at least 1 day")
    return days


class Command(BaseCommand):
    help = "Book every paid Stripe Checkout top-up that no webhook booked. Safe to run any number of times."

    def add_arguments(self, parser):
        # Parsed in handle(), not by argparse's type=: a CommandError raised inside argparse escapes
        # Django's handling and prints a traceback instead of one line.
        parser.add_argument("--since", default="30", metavar="DAYS", help="Look back this many days (30)")

    def handle(self, *args, since, **options):
        since = _days(since)
        if not stripe.is_configured():
            raise CommandError("STRIPE_SECRET_KEY is not set")
        try:
            report = topups.reconcile_paid_sessions(since=timezone.now() - timedelta(days=since))
        except stripe.StripeUnavailable as exc:
            raise CommandError(f"Stripe: {exc}") from exc
        self.stdout.write(
            f"Checked {report.checked} paid session(s) from the last {since} day(s): "
            f"booked {report.booked}, already booked {report.already_booked}, "
            f"not top-ups of ours {report.not_ours}, receipt links filled {report.receipts_filled}."
        )
