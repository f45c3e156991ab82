from django.core.management.base import BaseCommand, CommandError

from accounts.apikeys import find_by_key_or_prefix, revoke_api_key


class Command(BaseCommand):
    help = "Revoke an API key, given the whole key or its visible prefix."

    def add_arguments(self, parser):
        parser.add_argument("key_or_prefix")

    def handle(self, *args, key_or_prefix, **options):
        matches = find_by_key_or_prefix(key_or_prefix.strip())
        if not matches:
            raise CommandError("No key matches")
        if len(matches) > 1:
            raise CommandError(f"{len(matches)} keys share this prefix; pass the whole key")
        api_key = matches[0]
        if revoke_api_key(api_key=api_key):
            self.stdout.write(f"Revoked {api_key.prefix}… ({api_key.user.email})")
        else:
            self.stdout.write(f"{api_key.prefix}… was already revoked")
