"""Project-wide pages: home (what each role can do), health, and the API's catch-all 404."""

import threading
import time

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from knox.auth import TokenAuthentication
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny

from vectormlops.permissions import user_roles


@login_required
def home(request):
    """Each role sees the entry points it can use; the links come from the navigation context processor."""
    return render(request, "home.html", {"roles": sorted(user_roles(request.user))})


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _check_celery() -> str:
    from vectormlops.celery import app

    replies = app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping")
    return f"ok ({len(replies)} worker{'s' if len(replies) != 1 else ''})"


def _run_checks(checks: dict, down: list, named: tuple) -> None:
    for name, check in named:
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
            checks[name] = f"down: {exc.__class__.__name__}: {exc}"
            down.append(name)


# Liveness (database and Redis) is computed at most once per HEALTHZ_CACHE_S per process, whoever asks; the Celery
# ping (a broadcast that waits its whole timeout) runs for staff only, one at a time per process.
_liveness_lock = threading.Lock()
_liveness: dict = {"at": float("-inf"), "checks": {}, "down": []}
_celery_ping_lock = threading.Lock()


def _liveness_checks() -> tuple[dict, list]:
    with _liveness_lock:  # concurrent callers wait for the one computing, then share its answer
        if time.monotonic() - _liveness["at"] >= settings.HEALTHZ_CACHE_S:
            checks, down = {}, []
            _run_checks(checks, down, (("database", _check_database), ("redis", _check_redis)))
            _liveness.update(at=time.monotonic(), checks=checks, down=down)
        return dict(_liveness["checks"]), list(_liveness["down"])


def _celery_check_once(checks: dict, down: list) -> None:
    if "redis" in down:
        checks["celery"] = "down: the broker (redis) is unreachable"
        down.append("celery")
        return
    if not _celery_ping_lock.acquire(blocking=False):
        checks["celery"] = "busy: another ping is in flight in this process"
        return
    try:
        _run_checks(checks, down, (("celery", _check_celery),))
    finally:
        _celery_ping_lock.release()


@extend_schema(exclude=True)  # a probe for load balancers and operators, not part of the API
@api_view(["GET"])
@authentication_classes([TokenAuthentication, SessionAuthentication])
@permission_classes([AllowAny])
def healthz(request):
    """Anyone: 200 when the database and Redis answer (cached a few seconds), 503 naming what is down.
    Staff (session or API token) also get a Celery worker ping."""
    checks, down = _liveness_checks()
    if request.user.is_active and request.user.is_staff:
        _celery_check_once(checks, down)
    body = {"status": "ok" if not down else "down", "down": down, "checks": checks}
    return JsonResponse(body, status=200 if not down else 503)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def api_not_found(request):
    raise NotFound(f"No API route {request.path}")
