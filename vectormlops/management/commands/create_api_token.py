"""manage.py create_api_token <username> [--expires-days N]: prints the person's new API key alone on its last line."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from vectormlops.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a person and print it (shown once: only its digest is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--expires-days", type=int, default=None, help="days until it expires (default: never)")

    def handle(self, *args, username, expires_days, **options):
        if expires_days is not None and expires_days <= 0:
            raise CommandError("--expires-days must be a positive number of days")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {username!r}")
        expires_in = timedelta(days=expires_days) if expires_days else None
        token, key = api_token_create(user=user, expires_in=expires_in)
        until = f"until {token.expiry:%Y-%m-%d %H:%M} UTC" if token.expiry else "without expiry"
        self.stdout.write(
            f"API token for {username}, valid {until}. Use it as 'Authorization: Token <key>'; shown once:"
        )
        self.stdout.write(key)
