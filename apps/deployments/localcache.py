"""A per-process copy of the few Redis keys every robot poll reads (token, seen-guard, deployment state), kept
correct by Redis itself: server-assisted client-side caching (``CLIENT TRACKING ... REDIRECT`` to a connection
subscribed to ``__redis__:invalidate``, Redis >= 6). When any client changes or deletes a key this process has read,
Redis sends its name on the invalidation channel and the copy is dropped before the next poll looks at it.

Why: on a busy 2-core machine one blocking round trip to Redis costs a poll more than all of its Python, and a poll
that finds nothing new should be as cheap as a trivial view. redis-py's own client-side cache needs Redis 7.4+; this
works with any Redis/Valkey >= 6. Any error (Redis restarted, connection lost) drops every copy and reconnects, so
the worst case is a round trip, never a stale answer beyond the in-flight invalidation message."""

import logging
import os
import threading

import redis
from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)
MISSING = object()
MAX_KEYS = 100_000  # beyond this the copy is dropped and refilled (a fleet's worth of tokens and guards)


class TrackedKeys:
    """Reads Redis keys through a process-local copy that Redis invalidates."""

    def __init__(self, url: str):
        self._url = url
        self._lock = threading.Lock()
        self._values: dict[str, object] = {}
        self._pid = None
        self._reader = None
        self._listener = None

    def _connect(self) -> None:
        self._close()
        # RESP2: the subscription and its messages are plain replies (RESP3 would deliver them as push data).
        pool = redis.ConnectionPool.from_url(self._url, protocol=2, socket_timeout=2, socket_connect_timeout=2)
        listener = pool.make_connection()
        listener.connect()
        listener.send_command("CLIENT", "ID")
        listener_id = listener.read_response()
        listener.send_command("SUBSCRIBE", "__redis__:invalidate")
        listener.read_response()
        reader = pool.make_connection()
        reader.connect()
        reader.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id)
        reader.read_response()
        self._listener, self._reader, self._pid = listener, reader, os.getpid()
        self._values.clear()

    def _close(self) -> None:
        for connection in (self._reader, self._listener):
            if connection is not None:
                try:
                    connection.disconnect()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
        self._reader = self._listener = None
        self._values.clear()

    def _drain(self) -> None:
        """Apply the invalidations Redis has sent (non-blocking)."""
        while self._listener.can_read(timeout=0):
            message = self._listener.read_response()
            if not isinstance(message, list) or len(message) < 3 or message[0] not in (b"message", "message"):
                continue
            keys = message[2]
            if keys is None:  # FLUSHDB/FLUSHALL: everything goes
                self._values.clear()
                continue
            for key in keys:
                self._values.pop(key.decode() if isinstance(key, bytes) else key, None)

    def get_many(self, keys: list[str], decode) -> list:
        """Decoded values of Redis keys (None when missing), from the local copy when Redis has not changed them.

        The copy holds decoded objects (no unpickling per poll): callers must treat them as read-only."""
        with self._lock:
            try:
                if self._reader is None or self._pid != os.getpid():
                    self._connect()
                self._drain()
                values = [self._values.get(key, MISSING) for key in keys]
                missing = [key for key, value in zip(keys, values, strict=True) if value is MISSING]
                if missing:
                    if len(self._values) > MAX_KEYS:
                        self._values.clear()
                    self._reader.send_command("MGET", *missing)
                    raw = self._reader.read_response()
                    fetched = {key: (decode(v) if v is not None else None) for key, v in zip(missing, raw, strict=True)}
                    self._values.update(fetched)
                    values = [
                        fetched[key] if value is MISSING else value for key, value in zip(keys, values, strict=True)
                    ]
                return values
            except (redis.RedisError, OSError):
                self._close()
                raise


_tracked: TrackedKeys | None = None
_disabled = False


def tracked() -> TrackedKeys | None:
    """The process's tracked reader, or None where the cache is not Redis or tracking is switched off."""
    global _tracked
    if _disabled or not getattr(settings, "ROBOT_POLL_LOCAL_CACHE", True):
        return None
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        return None
    if _tracked is None or _tracked._url != settings.REDIS_URL:
        _tracked = TrackedKeys(settings.REDIS_URL)
    return _tracked


def get_many(keys: list[str]) -> dict[str, object]:
    """Django cache keys → values (None when missing), read through the tracked local copy when possible."""
    reader = tracked()
    serializer = getattr(getattr(cache, "_cache", None), "_serializer", None)
    if reader is not None and serializer is not None:
        raw_keys = [cache.make_key(key) for key in keys]  # our own keys: no memcached-compatibility scan
        try:
            values = reader.get_many(raw_keys, serializer.loads)
        except (redis.RedisError, OSError):
            log.warning("tracked Redis read failed; reading through the cache", exc_info=True)
        else:
            return dict(zip(keys, values, strict=True))
    found = cache.get_many(keys)
    return {key: found.get(key) for key in keys}


def forget(keys: list[str]) -> None:
    """Drop this process's copies of some Django cache keys now (the process that changes a key should not wait
    for Redis' invalidation message to see its own change)."""
    reader = _tracked
    if reader is None:
        return
    raw_keys = [cache.make_key(key) for key in keys]
    with reader._lock:
        for key in raw_keys:
            reader._values.pop(key, None)


def reset() -> None:
    """Drop every copy (tests start from an empty cache)."""
    reader = _tracked
    if reader is not None:
        with reader._lock:
            reader._values.clear()
