"""What robots are told, fast and never wrong for longer than ``ROBOT_STATE_MAX_STALENESS_S`` (the bound, 2 s).

The database is the truth. Each dataset has a deployment *generation* (``StateGeneration`` row ``dataset:<id>``),
and robot tokens and pins share one more (``robots``). A service that changes what a robot should be told (promote,
rollback, canary or shadow start/end, robot revoke, rotate, pin, unpin, delete, an artifact or a dataset change) bumps
the generation in the same transaction as the change, so a committed change always comes with a higher generation.

Each web process keeps a local copy of what polls need:

- the table of generations and dataset slugs, re-read from the database (two small queries) whenever it is older
  than half the bound; that is the only database work of a poll that finds nothing new;
- each dataset's deployment state, the active robot tokens (all read in one query per robots' generation; a token
  enrolled since is read on its own) and each pinned model's payload, every entry stamped with the generation that
  was current *before* the database read that built it. An entry is used only while its stamp equals the current
  generation, so it is never older than the generation table, which is never older than half the bound. A reader
  that was slow (it read the database before a promotion committed and stores its result after) stores it under
  the old stamp, which is already out of date: an older state can never pass for a newer one. The process that
  commits a change drops its generation table at once and again on commit.

So, after a change commits, every process answers it within half the bound plus one request, whatever happens to
Redis: the state path does not use Redis at all. Killed or silently dropped connections, ``timeout``, a restart
from an old snapshot and ``FLUSHALL`` cannot bring an old answer back because there is nothing in Redis to bring
back (tests/deployments/test_robot_state_faults.py injects each of them against several web processes). Unknown
tokens and datasets are not cached (nothing a robot sends creates an entry); unknown tokens are counted per client
address instead and refused with 429 past ``BAD_TOKENS_PER_MIN``.

Redis holds only counters, where being late by a moment costs nothing: the per-robot request throttle (each process
counts locally and adds its counts to Redis every half second, so a poll makes no round trip), and the failed
token / enrolment-key attempts per client address. When Redis does not answer, counting goes on in the process and
Redis is left alone for a few seconds (short socket timeouts), so a dead Redis never fails a poll nor stalls many.

Last-seen times are buffered per process and written in bulk every ``SEEN_FLUSH_S`` seconds; a robot that reports
another model than the one on record is written at once.
"""

import functools
import hashlib
import json
import logging
import math
import os
import threading
import time

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

log = logging.getLogger(__name__)

ROBOTS = "robots"
SEEN_EVERY_S = 60  # a robot's last-seen is refreshed at most this often
SEEN_FLUSH_S = 10.0
BAD_TOKENS_PER_MIN = 30  # unknown Bearer tokens per client address
ENROLL_FAILURES_PER_MIN = 10  # wrong enrolment keys per client address
REDIS_TIMEOUT_S = 0.25  # counters only: a late answer is not worth a stalled poll
REDIS_BACKOFF_S = 5.0  # after an error, counting stays in the process this long

# A test hook (None in production): called with a dataset's slug or "tokens" between a database read and storing
# what it read in the local copy (tests hold a poll there while a change commits).
after_database_read = None


def dataset_scope(dataset_id: int) -> str:
    return f"dataset:{dataset_id}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- generations -----------------------------------------------------------------------------------------------


def generation_bump(scope: str) -> None:
    """Grow a generation in the current transaction (call it inside the transaction that makes the change)."""
    from apps.deployments.models import StateGeneration

    if not StateGeneration.objects.filter(scope=scope).update(value=F("value") + 1):
        try:
            with transaction.atomic():
                StateGeneration.objects.create(scope=scope, value=1)
        except IntegrityError:  # created concurrently
            StateGeneration.objects.filter(scope=scope).update(value=F("value") + 1)
    _local.expire()  # this process sees its own change at once ...
    transaction.on_commit(_local.expire)  # ... and re-reads once it is committed


def dataset_changed(dataset_id: int) -> None:
    generation_bump(dataset_scope(dataset_id))


def robots_changed() -> None:
    generation_bump(ROBOTS)


# --- the local copy --------------------------------------------------------------------------------------------


class _LocalCopy:
    """This process's copy: generations and slugs (re-read after half the bound), and entries stamped with them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.checked_at = -math.inf
        self.slugs: dict[str, int] = {}  # slug -> dataset id
        self.generations: dict[str, int] = {}
        self.states: dict[str, tuple[tuple, dict]] = {}  # slug -> ((dataset id, generation), state)
        self.tokens: dict[str, tuple[int, RobotPrincipal]] = {}  # token digest -> (robots generation, principal)
        self.tokens_generation = None  # the robots' generation all active tokens were last read at
        self.pinned: dict[int, tuple[tuple, dict]] = {}  # model id -> ((dataset id, generation), payload entry)

    def expire(self) -> None:
        self.checked_at = -math.inf

    def refresh(self) -> None:
        if time.monotonic() - self.checked_at < settings.ROBOT_STATE_MAX_STALENESS_S / 2:
            return
        from apps.datasets.models import Dataset
        from apps.deployments.models import StateGeneration

        with self.lock:
            started = time.monotonic()
            if started - self.checked_at < settings.ROBOT_STATE_MAX_STALENESS_S / 2:
                return
            slugs = dict(Dataset.objects.values_list("slug", "pk"))
            generations = dict(StateGeneration.objects.values_list("scope", "value"))
            self.slugs, self.generations = slugs, generations
            self.checked_at = started

    def generation(self, scope: str) -> int:
        return self.generations.get(scope, 0)

    def clear(self) -> None:
        with self.lock:
            self.__init__()


_local = _LocalCopy()
_polled: set[tuple[str, int]] = set()  # (robot token digest, dataset id) known recorded: robots x datasets at most


def reset() -> None:
    """Forget this process's copy and seen-buffer (tests)."""
    _local.clear()
    _polled.clear()
    with _seen.lock:
        _seen.written.clear()
        _seen.pending.clear()
        _seen.flushed_at = time.monotonic()


# --- deployment state ------------------------------------------------------------------------------------------


def model_payload(model) -> dict:
    """What a robot needs to know about a model (plain data)."""
    artifacts = {
        a.format: {"url": f"/api/v1/models/{model.pk}/artifacts/{a.format}", "sha256": a.sha256, "size": a.size}
        for a in model.artifacts.all()
    }
    main = artifacts.get("onnx") or artifacts.get("pt") or {}
    return {
        "dataset": model.dataset.slug,
        "model_id": model.pk,
        "version": model.number,
        "sha256": main.get("sha256", ""),
        "classes": list(model.classes),
        "imgsz": model.imgsz,
        "conf_threshold": model.conf_threshold,
        "artifacts": artifacts,
    }


def payload_digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _build_state(dataset_id: int, slug: str) -> dict:
    from apps.deployments.selectors import live_deployments_query

    state = {"dataset": slug, "production": None, "canary": None, "shadow": None}
    for deployment in live_deployments_query(dataset_id).prefetch_related("model__artifacts"):
        payload = model_payload(deployment.model)
        state[deployment.channel] = {
            "deployment_id": deployment.pk,
            "percent": deployment.canary_percent or deployment.shadow_percent,
            "deployed_at": deployment.created_at.isoformat().replace("+00:00", "Z"),
            "model": payload,
            "digest": payload_digest(payload),  # so a poll computes its ETag without serialising the answer
        }
    return state


def dataset_state(slug: str) -> dict | None:
    """The live deployments of a dataset as robots see them; None for a dataset that does not exist."""
    _local.refresh()
    dataset_id = _local.slugs.get(slug)
    if dataset_id is None:
        return None
    # The stamp names the dataset too: a dataset deleted and created again under the same slug starts over.
    stamp = (dataset_id, _local.generation(dataset_scope(dataset_id)))
    entry = _local.states.get(slug)
    if entry is not None and entry[0] == stamp:
        return entry[1]
    state = _build_state(dataset_id, slug)
    if after_database_read is not None:
        after_database_read(slug)
    _local.states[slug] = (stamp, state)
    return state


def only_dataset() -> str | None:
    """The slug of the one dataset, or None when there is not exactly one."""
    _local.refresh()
    slugs = list(_local.slugs)
    return slugs[0] if len(slugs) == 1 else None


def _pinned_payload(model_id: int, slug: str) -> dict | None:
    """``{"payload", "digest"}`` of a model pinned to a robot, if it is a model of ``slug``."""
    from apps.training.models import ModelVersion

    dataset_id = _local.slugs.get(slug)
    stamp = (dataset_id, _local.generation(dataset_scope(dataset_id)))
    entry = _local.pinned.get(model_id)
    if entry is None or entry[0] != stamp:
        model = ModelVersion.objects.select_related("dataset").prefetch_related("artifacts").filter(pk=model_id).first()
        payload = model_payload(model) if model else None
        entry = (stamp, {"payload": payload, "digest": payload_digest(payload)} if payload else None)
        _local.pinned[model_id] = entry
    found = entry[1]
    return found if found and found["payload"]["dataset"] == slug else None


def in_canary(serial: str, canary_deployment_id: int, percent: int) -> bool:
    """Deterministic canary membership: the same robot stays in (or out of) the same canary on every poll."""
    digest = hashlib.sha256(f"{serial}:{canary_deployment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def _live_choice(state: dict, *, serial: str, pinned_model_id: int | None) -> tuple | None:
    if pinned_model_id:
        entry = _pinned_payload(pinned_model_id, state["dataset"])
        if entry:
            return entry["payload"], entry["digest"], "pinned", None
    canary = state.get("canary")
    if canary and in_canary(serial, canary["deployment_id"], canary["percent"] or 0):
        return canary["model"], canary["digest"], "canary", canary["deployed_at"]
    production = state.get("production")
    if production:
        return production["model"], production["digest"], "production", production["deployed_at"]
    return None


def robot_choice(state: dict, *, serial: str, pinned_model_id: int | None) -> tuple | None:
    """(model payload, its digest, channel, deployed_at, shadow entry or None) a robot should run now, or None when
    nothing is deployed. A robot in the shadow share (the canary's hash of the serial) also runs the shadow model,
    unless that is the model it runs anyway."""
    choice = _live_choice(state, serial=serial, pinned_model_id=pinned_model_id)
    if choice is None:
        return None
    shadow = state.get("shadow")
    if (
        shadow is None
        or shadow["model"]["model_id"] == choice[0]["model_id"]
        or not in_canary(serial, shadow["deployment_id"], shadow["percent"] or 0)
    ):
        shadow = None
    return (*choice, shadow)


def choice_etag(choice: tuple) -> str:
    """Quoted; changes whenever the answer does (model payload, channel, deployment time, shadow, poll interval)."""
    _, digest, channel, deployed_at, shadow = choice
    raw = f"{digest}|{channel}|{deployed_at}|{settings.ROBOT_POLL_AFTER_S}"
    if shadow is not None:
        raw += f"|shadow:{shadow['digest']}"
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


def choice_body(choice: tuple) -> dict:
    """The 200 body of GET /robot/model (with ``shadow`` for a robot in the shadow share)."""
    payload, _, channel, deployed_at, shadow = choice
    body = {**payload, "channel": channel, "deployed_at": deployed_at, "poll_after_s": settings.ROBOT_POLL_AFTER_S}
    if shadow is not None:
        body["shadow"] = {k: v for k, v in shadow["model"].items() if k != "dataset"}
    return body


def etag_matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == "*" or candidate == etag:
            return True
    return False


def robot_polls(principal: "RobotPrincipal", slug: str) -> None:
    """Record once that a robot polls this (existing) dataset; later polls find it in this process's set."""
    from apps.deployments.models import RobotDataset

    dataset_id = _local.slugs.get(slug)
    # The token's digest, not the robot's id, names the robot here: ids can come back (a rolled-back test), tokens not.
    key = (principal.token_digest, dataset_id)
    if dataset_id is None or key in _polled:
        return
    row = RobotDataset(robot_id=principal.id, dataset_id=dataset_id)
    RobotDataset.objects.bulk_create([row], ignore_conflicts=True)
    _polled.add(key)


def robot_may_fetch(principal: "RobotPrincipal", model_id: int) -> bool:
    """A robot downloads the model pinned to it, or a model that is or was deployed (production, canary or shadow)
    for a dataset it polls."""
    from apps.deployments.models import Deployment, RobotDataset

    if model_id == principal.pinned_model_id:
        return True
    polled = RobotDataset.objects.filter(robot_id=principal.id).values("dataset_id")
    return Deployment.objects.filter(model_id=model_id, dataset_id__in=polled).exists()


# --- robot tokens ----------------------------------------------------------------------------------------------


class RobotPrincipal:
    """What ``request.user`` is for a robot: not a person, holds no role, reaches only robot endpoints."""

    is_robot = True
    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False

    __slots__ = ("id", "serial", "pinned_model_id", "token_digest", "reported")

    def __init__(self, *, id: int, serial: str, pinned_model_id=None, token_digest: str = "", reported=None):
        self.id, self.serial, self.pinned_model_id = id, serial, pinned_model_id
        # (model id, sha256) on record when the token was read; None for a robot never seen.
        self.token_digest, self.reported = token_digest, reported

    @property
    def pk(self):
        return self.id

    def get_username(self):
        return f"robot:{self.serial}"

    def __str__(self):
        return self.get_username()


class TokenRefused(Exception):
    """An unknown or revoked token (``throttled``: this address has sent too many of them lately)."""

    def __init__(self, *, throttled: bool, wait: float | None = None):
        super().__init__("throttled" if throttled else "unknown token")
        self.throttled, self.wait = throttled, wait


_TOKEN_FIELDS = ("token_hash", "id", "serial", "pinned_model_id", "running_model_id", "running_sha256", "last_seen_at")


def _principal(row) -> RobotPrincipal:
    digest, robot_id, serial, pinned, running_model, running_sha, last_seen = row
    reported = (running_model, running_sha) if last_seen is not None else None  # None: never seen
    return RobotPrincipal(id=robot_id, serial=serial, pinned_model_id=pinned, token_digest=digest, reported=reported)


def robot_for_token(token: str, *, request) -> RobotPrincipal:
    """The robot holding ``token``; raises TokenRefused. Only valid tokens are kept in the local copy.

    Every active token is read in one query whenever the robots' generation changes (a fleet's worth of rows, so
    that a revoke does not cost one query per robot and process); a token enrolled since is read on its own."""
    from apps.deployments.models import Robot

    digest = token_hash(token)
    _local.refresh()
    generation = _local.generation(ROBOTS)
    if _local.tokens_generation != generation:
        active = list(Robot.objects.filter(is_active=True).values_list(*_TOKEN_FIELDS))
        if after_database_read is not None:
            after_database_read("tokens")
        _local.tokens = {row[0]: (generation, _principal(row)) for row in active}
        _local.tokens_generation = generation
    entry = _local.tokens.get(digest)
    if entry is not None and entry[0] == generation:
        return entry[1]
    address = client_address(request)
    if failures_count("bad-token", address) >= BAD_TOKENS_PER_MIN:
        raise TokenRefused(throttled=True, wait=_window_left(60))
    row = Robot.objects.filter(token_hash=digest, is_active=True).values_list(*_TOKEN_FIELDS).first()
    if row is None:
        failure_record("bad-token", address)
        raise TokenRefused(throttled=False)
    principal = _principal(row)
    _local.tokens[digest] = (generation, principal)
    return principal


def client_address(request) -> str:
    """The caller's address: REMOTE_ADDR, or X-Forwarded-For's entry of the first trusted proxy when
    ``REST_FRAMEWORK["NUM_PROXIES"]`` says how many proxies are in front (never a header a client can choose)."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = api_settings.NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        return hops[-min(proxies, len(hops))]
    return remote


# --- Redis counters --------------------------------------------------------------------------------------------


class _Redis:
    """A client with short timeouts that leaves Redis alone for a while after an error (counting stays local)."""

    def __init__(self):
        self.client, self.pid, self.url, self.down_until = None, None, None, 0.0

    def get(self) -> redis.Redis | None:
        if time.monotonic() < self.down_until:
            return None
        if self.client is None or self.pid != os.getpid() or self.url != settings.REDIS_URL:
            self.url, self.pid = settings.REDIS_URL, os.getpid()
            self.client = redis.Redis.from_url(
                self.url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
        return self.client

    def failed(self) -> None:
        log.warning("Redis did not answer; robot counters stay in this process for %.0f s", REDIS_BACKOFF_S)
        self.down_until = time.monotonic() + REDIS_BACKOFF_S
        if self.client is not None:
            self.client.close()
        self.client = None


_redis = _Redis()


def _key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:robot:{name}"


def _window_left(duration: int) -> float:
    now = time.time()
    return duration - (now % duration)


_local_failures: dict[str, int] = {}  # this process's failure counts when Redis does not answer


def failures_count(kind: str, address: str, duration: int = 60) -> int:
    """Failed attempts of ``kind`` from ``address`` in the current window (all processes, through Redis)."""
    key = _key(f"fail:{kind}:{address}:{int(time.time() // duration)}")
    client = _redis.get()
    if client is not None:
        try:
            return int(client.get(key) or 0) + _local_failures.get(key, 0)
        except (redis.RedisError, OSError):
            _redis.failed()
    return _local_failures.get(key, 0)


def failure_record(kind: str, address: str, duration: int = 60) -> None:
    key = _key(f"fail:{kind}:{address}:{int(time.time() // duration)}")
    client = _redis.get()
    if client is not None:
        try:
            client.pipeline(transaction=False).incr(key).expire(key, duration + 1).execute()
            return
        except (redis.RedisError, OSError):
            _redis.failed()
    if len(_local_failures) > 10_000:
        _local_failures.clear()  # a flood of addresses: forget old windows rather than grow
    _local_failures[key] = _local_failures.get(key, 0) + 1


# All of a flush's counters in one command.
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
        pending, self.flushed_at = self.local, now
        client = _redis.get()
        if not pending or client is None:
            return
        self.local = {}
        keys = [_key(f"throttle:{digest}:{int(now // duration)}") for digest in pending]
        try:
            results = client.eval(_ADD_COUNTS_LUA, len(keys), *keys, duration + 1, *pending.values())
        except (redis.RedisError, OSError):
            _redis.failed()
            for digest, count in pending.items():  # keep counting locally
                self.local[digest] = self.local.get(digest, 0) + count
            return
        for digest, total in zip(pending, results, strict=True):
            self.known[digest] = int(total)


_counters = _Counters()


@functools.lru_cache(maxsize=8)
def _parse_rate(rate: str) -> tuple[int, int]:
    return SimpleRateThrottle.parse_rate(None, rate)


def robot_rate() -> tuple[int, int]:
    return _parse_rate(settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get("robot", "600/min"))


def robot_throttle_hit(principal: RobotPrincipal) -> tuple[bool, float]:
    """Count a robot's request; (allowed, seconds until the window ends)."""
    num, duration = robot_rate()
    now = time.time()
    count = _counters.hit(principal.token_digest or f"robot-{principal.id}", now, duration)
    return count <= num, duration - (now % duration)


# --- last seen -------------------------------------------------------------------------------------------------


class _SeenBuffer:
    """This process's record of robots seen: which report each robot last wrote, and last-seen times to write."""

    def __init__(self):
        self.lock = threading.Lock()
        self.written: dict[int, tuple] = {}  # robot id -> (minute, model_id, sha256) last written or buffered
        self.pending: dict[int, tuple] = {}  # robot id -> (model_id, sha256) seen since the last flush
        self.flushed_at = time.monotonic()


_seen = _SeenBuffer()


def robot_touch(*, principal: RobotPrincipal, model_id: int | None = None, sha256: str = "") -> None:
    """Record that a robot was seen and the model it reports running, without a database query most of the time.

    A new report (another model than the one on record when the tokens were read, or than this process last wrote)
    is written at once: people and tests look at it. Otherwise last-seen is refreshed at most once a minute,
    buffered and written in bulk every ``SEEN_FLUSH_S`` seconds (one UPDATE per distinct report)."""
    report = (model_id, sha256)
    minute = int(time.time() // SEEN_EVERY_S)
    with _seen.lock:
        last = _seen.written.get(principal.id)
        if last is not None and last == (minute, *report):
            return
        on_record = last[1:] if last is not None else (principal.reported or (None, ""))
        new_report = on_record != report
        _seen.written[principal.id] = (minute, *report)
        if not new_report:
            _seen.pending[principal.id] = report
        flush_due = time.monotonic() - _seen.flushed_at >= SEEN_FLUSH_S
    if new_report:
        _write_seen({principal.id: report})
    if flush_due:
        robot_seen_flush()


def robot_seen_flush() -> int:
    """Write the buffered last-seen refreshes of this process; returns how many robots were written."""
    with _seen.lock:
        pending, _seen.pending, _seen.flushed_at = _seen.pending, {}, time.monotonic()
    if pending:
        _write_seen(pending)
    return len(pending)


def _write_seen(reports: dict[int, tuple]) -> None:
    from apps.deployments.models import Robot
    from apps.training.models import ModelVersion

    now = timezone.now()
    model_ids = {model_id for model_id, _ in reports.values() if model_id}
    known = set(ModelVersion.objects.filter(pk__in=model_ids).values_list("pk", flat=True)) if model_ids else set()
    groups: dict[tuple, list[int]] = {}
    for robot_id, (model_id, sha) in reports.items():
        groups.setdefault((model_id if model_id in known else None, sha), []).append(robot_id)
    with transaction.atomic():
        for (model_id, sha), ids in groups.items():
            fields = {"last_seen_at": now}
            if model_id or sha:
                fields.update(running_model_id=model_id, running_sha256=sha[:64], running_reported_at=now)
            Robot.objects.filter(pk__in=ids).update(**fields)
