"""Project-wide pages: home (a dashboard of what waits for this person), the error pages, health, and the API's
catch-all 404."""

import logging
import threading
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from knox.auth import TokenAuthentication
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny

from vectormlops.permissions import ANNOTATOR, ML_ENGINEER, REVIEWER, user_roles

log = logging.getLogger(__name__)
UNSEEN_AFTER = timedelta(days=1)
DASHBOARD_ROWS = 10


def _labeling_waiting() -> list[dict]:
    from apps.labeling.selectors import datasets_with_queue_counts

    return [row for row in datasets_with_queue_counts() if row["counts"]["to_label"] or row["counts"]["to_review"]]


def _engineering_waiting(now) -> dict:
    from apps.deployments.models import Robot
    from apps.deployments.selectors import lifecycle_status, models_with_status
    from apps.monitoring.selectors import open_alerts
    from apps.training.models import TrainingRun

    runs = list(
        TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE_STATUSES)
        .select_related("dataset")
        .order_by("-queued_at")[:DASHBOARD_ROWS]
    )
    fresh = models_with_status().filter(in_production=False, in_canary=False, was_deployed=False)
    candidates = [m for m in fresh.order_by("-created_at")[: DASHBOARD_ROWS * 3] if lifecycle_status(m) == "candidate"]
    unseen = (
        Robot.objects.filter(is_active=True)
        .exclude(last_seen_at__gte=now - UNSEEN_AFTER)
        .select_related("running_model__dataset")
        .order_by("last_seen_at")
    )
    return {
        "runs": runs,
        "candidates": candidates[:DASHBOARD_ROWS],
        "alerts": open_alerts()[:DASHBOARD_ROWS],
        "unseen_robots": list(unseen[:DASHBOARD_ROWS]),
    }


@login_required
def home(request):
    """What waits for this person, by role: images to label or review, runs in progress, candidates awaiting a
    decision, open alerts, robots not seen for a day; each item links to where it is dealt with."""
    roles = user_roles(request.user)
    context = {"roles": sorted(roles)}
    if roles & {ANNOTATOR, REVIEWER}:
        context["labeling"] = _labeling_waiting()
    if ML_ENGINEER in roles:
        context.update(_engineering_waiting(timezone.now()))
    context["can_label"], context["can_review"] = ANNOTATOR in roles, REVIEWER in roles
    return render(request, "home.html", context)


def _error_page(request, template: str, status: int, exception=None):
    return render(request, template, {"exception_text": str(exception or "")}, status=status)


def permission_denied(request, exception=None):
    """403 inside the site's layout, saying what to do (ask for the role); logged as one line by the log filter."""
    return _error_page(request, "403.html", 403, exception)


def page_not_found(request, exception=None):
    return _error_page(request, "404.html", 404)


def server_error(request):
    """500: rendered with as little as possible (the database may be what failed), still with the navigation."""
    try:
        return render(request, "500.html", status=500)
    except Exception:  # noqa: BLE001 - the error page itself must not fail
        log.exception("the 500 page could not be rendered")
        from django.http import HttpResponseServerError

        return HttpResponseServerError(
            "<h1>Server error</h1><p>Try again in a minute; if it persists, tell an administrator.</p>"
        )


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
