from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey
from billing.models import Wallet
from generation.integrity import money_differences


class Command(BaseCommand):
    help = ("Check that every wallet's balance is the sum of its ledger and every API key's spend counters "
            "match its charges. Read-only; exits 1 when anything differs.")

    def handle(self, *args, **options):
        differences = money_differences()
        for difference in differences:
            self.stdout.write(str(difference))
        checked = f"{Wallet.objects.count()} wallet(s) and {ApiKey.objects.count()} key(s)"
        if differences:
            raise CommandError(f"{len(differences)} difference(s) in {checked}")
        self.stdout.write(f"Checked {checked}: no differences.")
