"""Per-robot throttling for the robot endpoints (DRF throttle, counters in Redis through Django's cache).

A fixed-window counter (one INCR) instead of DRF's sliding history (a GET and a SET of a list): the poll endpoint
is the hottest path of the system, and the poll view fetches this counter in the same Redis round trip as the rest
of what it needs (see ``prefetch_robot_keys``)."""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from apps.deployments.authentication import principal_cache_key, token_hash
from apps.deployments.state import DATASETS_KEY, SEEN_KEY, state_key


def robot_rate() -> tuple[int, int]:
    rate = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get("robot", "600/min")
    return SimpleRateThrottle.parse_rate(None, rate)


def throttle_key(digest: str, now: float, duration: int) -> str:
    return f"throttle:robot:{digest}:{int(now // duration)}"


def bearer_digest(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return token_hash(parts[1])


def _raw_client():
    """Django's Redis cache client and serializer (to pipeline several commands in one round trip)."""
    inner = getattr(cache, "_cache", None)
    if inner is None or not hasattr(inner, "get_client") or not hasattr(inner, "_serializer"):
        return None, None
    return inner.get_client(write=True), inner._serializer


def prefetch_robot_keys(request, *, slug: str | None) -> dict | None:
    """Read a robot request's token, seen-guard, deployment state and throttle counter in one Redis round trip.

    Returns {django cache key: value or None}; the authenticator, the throttle and the view read it instead of
    asking Redis again. None when the cache is not Redis (the callers then fall back to plain cache calls)."""
    digest = bearer_digest(request)
    if digest is None:
        return None
    client, serializer = _raw_client()
    if client is None:
        return None
    num, duration = robot_rate()
    now = time.time()
    keys = [principal_cache_key(digest), SEEN_KEY.format(digest=digest), state_key(slug) if slug else DATASETS_KEY]
    counter = throttle_key(digest, now, duration)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(cache.make_and_validate_key(key))
    raw_counter = cache.make_and_validate_key(counter)
    pipe.incr(raw_counter)
    pipe.expire(raw_counter, duration + 1, nx=True)
    results = pipe.execute()
    found = {
        key: (serializer.loads(value) if value is not None else None) for key, value in zip(keys, results, strict=False)
    }
    found[counter] = int(results[len(keys)])
    request._robot_prefetched = found
    return found


class RobotThrottle(BaseThrottle):
    """At most ``DEFAULT_THROTTLE_RATES["robot"]`` requests per robot and window; people are not throttled here."""

    def allow_request(self, request, view):
        user = request.user
        if not getattr(user, "is_robot", False):
            return True
        num, duration = robot_rate()
        now = time.time()
        digest = user.token_digest or token_hash(str(user.id))
        key = throttle_key(digest, now, duration)
        prefetched = getattr(request, "_robot_prefetched", None) or {}
        count = prefetched.get(key)
        if count is None:
            cache.add(key, 0, duration + 1)
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, duration + 1)
                count = 1
        self._wait = duration - (now % duration)
        return count <= num

    def wait(self):
        return getattr(self, "_wait", None)
