import uuid
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.apikeys import TooManyKeys, create_api_key
from accounts.models import User
from billing import ledger

# The ledger keeps 12 digits before the point (billing.models.MONEY).
MAX_CREDIT_USD = Decimal(10) ** 12


def _usd(value):
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"--credit must be a number of USD, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise CommandError("--credit must be zero or a positive number of USD")
    if amount >= MAX_CREDIT_USD:
        raise CommandError(f"--credit must be below {MAX_CREDIT_USD} USD")
    return amount


class Command(BaseCommand):
    help = "Create an API key for EMAIL (creating the user if needed); prints the key on the last line."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="", help="A label for the key")
        # Parsed in handle(), not by argparse's type=: a CommandError raised inside argparse escapes
        # Django's handling and prints a traceback instead of one line.
        parser.add_argument("--credit", default="0", help="USD to credit through the ledger")
        parser.add_argument("--test", action="store_true", help="A test-mode key (ank_test_…)")

    def handle(self, *args, email, name, credit, test, **options):
        email = email.strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"Not a valid e-mail address: {email!r}") from None
        credit = _usd(credit)
        with transaction.atomic():
            user = User.objects.filter(email__iexact=email).first()
            if user is None:
                user = User.objects.create_user(email=email)  # no usable password until reset
                self.stderr.write(f"Created user {email}")
        try:
            api_key, full_key = create_api_key(user=user, name=name, test=test)
        except TooManyKeys as exc:
            raise CommandError(str(exc)) from None
        if credit > 0:
            entry = ledger.credit(
                user=user, amount=credit, kind=ledger.Kind.ADJUSTMENT,
                reference=f"cli-credit:{uuid.uuid4()}", memo="Credit from manage.py createapikey",
            )
            self.stderr.write(f"Credited ${entry.amount}; balance ${entry.balance_after}")
        self.stderr.write(f"Key {api_key.prefix}… created. It is shown once; store it now:")
        self.stdout.write(full_key)
