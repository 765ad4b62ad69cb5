"""Robot authentication: ``Authorization: Bearer <token>``. Tokens are stored as sha256; the lookup is cached in
Redis so a robot's poll can be answered without touching the database."""

import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

CACHE_TTL_S = 300


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _cache_key(digest: str) -> str:
    return f"robot-token:{digest}"


def principal_cache_key(digest: str) -> str:
    return _cache_key(digest)


def principal_from_cached(found, digest: str) -> "RobotPrincipal | None":
    """The principal from a cached ``[id, serial, pinned_model_id]`` (or None for an unknown/revoked token)."""
    if not found:
        return None
    pinned = found[2] if len(found) > 2 else None
    return RobotPrincipal(id=found[0], serial=found[1], pinned_model_id=pinned, token_digest=digest)


def lookup_token(digest: str):
    """What the cache holds for a token digest: ``[id, serial, pinned_model_id]`` or ``[]``."""
    from apps.deployments.models import Robot

    row = Robot.objects.filter(token_hash=digest, is_active=True).values_list("id", "serial", "pinned_model_id").first()
    found = list(row) if row else []
    cache.set(_cache_key(digest), found, CACHE_TTL_S)
    return found


def forget_token(digest: str) -> None:
    """Call whenever a robot's token or activity changes (revocation takes effect at once)."""
    from apps.deployments import localcache

    cache.delete(_cache_key(digest))
    localcache.forget([_cache_key(digest)])


@dataclass(frozen=True)
class RobotPrincipal:
    """What ``request.user`` is for a robot: not a person, holds no role, reaches only robot endpoints."""

    id: int
    serial: str
    pinned_model_id: int | None = None
    token_digest: str = ""
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
        # The poll view has already hashed this header's token and read its cache entry with the other keys it needs.
        prefetched = getattr(request, "_robot_prefetched", None)
        digest = getattr(request, "_robot_digest", None) or token_hash(token)
        found = prefetched.get(_cache_key(digest)) if prefetched is not None else cache.get(_cache_key(digest))
        if found is None:
            found = lookup_token(digest)
        principal = principal_from_cached(found, digest)
        if principal is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked robot token.")
        return principal, principal

    def authenticate_header(self, request):
        return self.keyword


class RobotTokenScheme(OpenApiAuthenticationExtension):
    """Describes robot Bearer tokens in the OpenAPI schema (/api/schema/)."""

    target_class = "apps.deployments.authentication.RobotTokenAuthentication"
    name = "robotBearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A robot token (robot endpoints only)."}
