"""Robot authentication: ``Authorization: Bearer <token>``. Tokens are stored as sha256; the lookup is cached in
Redis so a robot's poll can be answered without touching the database."""

import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from rest_framework import authentication, exceptions

CACHE_TTL_S = 300


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _cache_key(digest: str) -> str:
    return f"robot-token:{digest}"


def forget_token(digest: str) -> None:
    """Call whenever a robot's token or activity changes (revocation takes effect at once)."""
    cache.delete(_cache_key(digest))


@dataclass(frozen=True)
class RobotPrincipal:
    """What ``request.user`` is for a robot: not a person, holds no role, reaches only robot endpoints."""

    id: int
    serial: str
    is_robot: bool = True
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    is_anonymous: bool = False

    @property
    def pk(self):
        return self.id

    def get_username(self):
        return f"robot:{self.serial}"

    def __str__(self):
        return self.get_username()


class RobotTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Bearer token header.")
        try:
            token = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Malformed Bearer token.") from exc
        digest = token_hash(token)
        key = _cache_key(digest)
        found = cache.get(key)
        if found is None:
            from apps.deployments.models import Robot

            row = Robot.objects.filter(token_hash=digest, is_active=True).values_list("id", "serial").first()
            found = list(row) if row else []
            cache.set(key, found, CACHE_TTL_S)
        if not found:
            raise exceptions.AuthenticationFailed("Unknown or revoked robot token.")
        principal = RobotPrincipal(id=found[0], serial=found[1])
        return principal, principal

    def authenticate_header(self, request):
        return self.keyword
