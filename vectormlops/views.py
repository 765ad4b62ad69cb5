"""Project-wide pages: home (what each role can do), health, and the API's catch-all 404."""

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound

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


def healthz(request):
    """200 when the database, Redis and at least one Celery worker answer; 503 naming what is down."""
    checks, down = {}, []
    for name, check in (("database", _check_database), ("redis", _check_redis), ("celery", _check_celery)):
        if name == "celery" and "redis" in down:
            checks[name] = "down: the broker (redis) is unreachable"
            down.append(name)
            continue
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
            checks[name] = f"down: {exc.__class__.__name__}: {exc}"
            down.append(name)
    body = {"status": "ok" if not down else "down", "down": down, "checks": checks}
    return JsonResponse(body, status=200 if not down else 503)


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def api_not_found(request):
    raise NotFound(f"No API route {request.path}")
