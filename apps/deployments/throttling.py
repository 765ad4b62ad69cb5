"""Per-robot throttling for the robot endpoints (a DRF throttle; the shared counters live in Redis).

A fixed-window counter per robot instead of DRF's sliding history (a GET and a SET of a list per request): the poll
endpoint is the hottest path of the system. Each process counts locally and adds its counts to Redis (INCRBY)
every half second, so a poll needs no round trip for throttling (see ``_Counters``)."""

import logging
import threading
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from apps.deployments import localcache
from apps.deployments.authentication import principal_cache_key, token_hash
from apps.deployments.state import DATASETS_KEY, REPORT_KEY, state_key

log = logging.getLogger(__name__)


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


def prefetch_robot_keys(request, *, slug: str | None) -> dict | None:
    """Read a robot request's token, its model report on record and the deployment state together (through the
    tracked local copy of apps.deployments.localcache: usually no round trip at all). Returns {django cache key:
    value or None}; the authenticator and the view read it instead of asking Redis again."""
    digest = bearer_digest(request)
    if digest is None:
        return None
    keys = [principal_cache_key(digest), REPORT_KEY.format(digest=digest), state_key(slug) if slug else DATASETS_KEY]
    found = localcache.get_many(keys)
    request._robot_prefetched = found
    request._robot_digest = digest
    return found


# All of a flush's counters in one command (one reply to parse instead of two per robot).
_ADD_COUNTS_LUA = """
local totals = {}
for i, key in ipairs(KEYS) do
  local added = tonumber(ARGV[i + 1])
  local total = redis.call('INCRBY', key, added)
  if total == added then redis.call('EXPIRE', key, ARGV[1]) end
  totals[i] = total
end
return totals
"""


class _Counters:
    """Per-process request counts per robot and window, added to the shared Redis counter every FLUSH_S seconds.

    A robot's count is what Redis held at the last flush (all processes together) plus this process's unflushed
    requests, so the limit holds across workers give or take FLUSH_S of the other workers' traffic, and the hot
    path makes no round trip."""

    FLUSH_S = 0.5

    def __init__(self):
        self.lock = threading.Lock()
        self.window = None
        self.local: dict[str, int] = {}
        self.known: dict[str, int] = {}
        self.flushed_at = 0.0
        self.script = None

    def hit(self, digest: str, now: float, duration: int) -> int:
        with self.lock:
            window = int(now // duration)
            if window != self.window:
                self.window, self.local, self.known = window, {}, {}
            self.local[digest] = self.local.get(digest, 0) + 1
            count = self.known.get(digest, 0) + self.local[digest]
            if now - self.flushed_at >= self.FLUSH_S:
                self._flush(now, duration)
            return count

    def _flush(self, now: float, duration: int) -> None:
        pending, self.local, self.flushed_at = self.local, {}, now
        if not pending:
            return
        keys = {digest: cache.make_and_validate_key(throttle_key(digest, now, duration)) for digest in pending}
        inner = getattr(cache, "_cache", None)
        try:
            if inner is not None and hasattr(inner, "get_client"):
                client = inner.get_client(write=True)
                if self.script is None:
                    self.script = client.register_script(_ADD_COUNTS_LUA)
                results = self.script(
                    keys=[keys[digest] for digest in pending], args=[duration + 1, *pending.values()], client=client
                )
            else:  # not Redis (a development cache): plain cache calls
                results = []
                for digest, count in pending.items():
                    key = throttle_key(digest, now, duration)
                    cache.add(key, 0, duration + 1)
                    results.append(cache.incr(key, count))
        except Exception:  # noqa: BLE001 - a Redis hiccup must not fail robots' polls; keep counting locally
            log.warning("could not flush robot throttle counters", exc_info=True)
            for digest, count in pending.items():
                self.local[digest] = self.local.get(digest, 0) + count
            return
        for digest, total in zip(pending, results, strict=True):
            self.known[digest] = int(total)


_counters = _Counters()


class RobotThrottle(BaseThrottle):
    """At most ``DEFAULT_THROTTLE_RATES["robot"]`` requests per robot and window; people are not throttled here."""

    def allow_request(self, request, view):
        user = request.user
        if not getattr(user, "is_robot", False):
            return True
        num, duration = robot_rate()
        now = time.time()
        count = _counters.hit(user.token_digest or f"robot-{user.id}", now, duration)
        self._wait = duration - (now % duration)
        return count <= num

    def wait(self):
        return getattr(self, "_wait", None)
