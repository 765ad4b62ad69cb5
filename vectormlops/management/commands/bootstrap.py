"""First-start set-up: the role groups and, if no superuser exists yet, an admin account whose login is
printed once (password from DJANGO_SUPERUSER_PASSWORD, else random)."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from vectormlops.permissions import ROLES


class Command(BaseCommand):
    help = "Create the role groups and the first admin account (idempotent)."

    def handle(self, *args, **options):
        for name in ROLES:
            Group.objects.get_or_create(name=name)
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        user = user_model.objects.create_superuser(username=username, email="", password=password)
        user.groups.set(Group.objects.filter(name__in=ROLES))
        bar = "=" * 64
        self.stdout.write(
            f"\n{bar}\n  Admin account created (shown only this once):\n"
            f"    username: {username}\n    password: {password}\n{bar}\n"
        )
