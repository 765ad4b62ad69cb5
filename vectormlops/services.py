"""Writes about people that belong to no app: their API tokens (django-rest-knox keeps only a digest)."""

from datetime import timedelta

from django.db import transaction
from knox.models import AuthToken


@transaction.atomic
def api_token_create(*, user, expires_in: timedelta | None) -> tuple[AuthToken, str]:
    """A new API token for a person; returns its row and its key. The key is shown once: only its digest is
    stored. ``expires_in`` None: the token does not expire."""
    return AuthToken.objects.create(user=user, expiry=expires_in)
