"""The real services the project stands on: health, a Celery round-trip, a WebSocket round-trip, the API envelope."""

import asyncio
import threading

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Group
from django.core.management import call_command

from vectormlops import views
from vectormlops.celery import ping_task
from vectormlops.embedded_redis import embedded_valkey
from vectormlops.services import api_token_create


def test_celery_round_trip_through_the_broker(celery_worker_thread):
    assert ping_task.delay({"hello": "vector"}).get(timeout=30) == {"hello": "vector"}


@pytest.fixture
def fresh_healthz():
    """Forget the process's cached liveness answer, so a test sees what the services say now."""
    views._liveness["at"] = float("-inf")
    yield
    views._liveness["at"] = float("-inf")


def test_healthz_for_staff_pings_a_worker(client, celery_worker_thread, make_user, fresh_healthz):
    client.force_login(make_user("root", "admin"))
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "celery"}
    assert body["checks"]["celery"].startswith("ok")


@pytest.mark.django_db
def test_healthz_for_a_staff_api_token_pings_a_worker(client, make_user, fresh_healthz, monkeypatch):
    _, key = api_token_create(user=make_user("root", "admin"), expires_in=None)
    monkeypatch.setattr(views, "_check_celery", lambda: "ok (1 worker)")
    response = client.get("/healthz", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200 and response.json()["checks"]["celery"] == "ok (1 worker)"


@pytest.mark.django_db
def test_healthz_for_anyone_else_never_pings_celery(client, make_user, fresh_healthz, monkeypatch):
    def ping_forbidden():
        raise AssertionError("an anonymous or non-staff call pinged Celery")

    monkeypatch.setattr(views, "_check_celery", ping_forbidden)
    response = client.get("/healthz")  # no worker runs: only the database and Redis count
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "down": [], "checks": {"database": "ok", "redis": "ok"}}
    client.force_login(make_user("eng", "ml_engineer"))
    assert set(client.get("/healthz").json()["checks"]) == {"database", "redis"}


@pytest.mark.django_db
def test_healthz_liveness_is_cached_for_a_few_seconds(client, settings, fresh_healthz, monkeypatch):
    calls = []
    monkeypatch.setattr(views, "_check_database", lambda: calls.append("db") or "ok")
    settings.HEALTHZ_CACHE_S = 60
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert calls == ["db"]
    settings.HEALTHZ_CACHE_S = 0
    client.get("/healthz")
    assert calls == ["db", "db"]


def test_healthz_runs_one_celery_ping_at_a_time_per_process(monkeypatch):
    started, release, pings = threading.Event(), threading.Event(), []

    def slow_ping():
        pings.append(1)
        started.set()
        release.wait(10)
        return "ok (1 worker)"

    monkeypatch.setattr(views, "_check_celery", slow_ping)
    first = {}
    thread = threading.Thread(target=views._celery_check_once, args=(first, []))
    thread.start()
    assert started.wait(10)
    second, second_down = {}, []
    views._celery_check_once(second, second_down)  # while the first ping is in flight
    release.set()
    thread.join(10)
    assert pings == [1]
    assert second["celery"].startswith("busy") and second_down == []
    assert first["celery"] == "ok (1 worker)"


@pytest.mark.django_db
def test_healthz_is_503_naming_redis_when_valkey_stops(client, settings, make_user, fresh_healthz):
    from vectormlops.celery import app

    client.force_login(make_user("root", "admin"))
    with embedded_valkey() as (url, server):
        settings.REDIS_URL = url
        old_broker = app.conf.broker_url
        app.conf.broker_url = url
        try:
            server.stop()
            response = client.get("/healthz")
        finally:
            app.conf.broker_url = old_broker
    assert response.status_code == 503
    body = response.json()
    assert "redis" in body["down"] and "celery" in body["down"]
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_healthz_for_staff_is_503_naming_celery_without_a_worker(client, make_user, fresh_healthz):
    client.force_login(make_user("root", "admin"))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["celery"]


def test_websocket_round_trip_through_the_channel_layer(transactional_db, make_user):
    from channels.routing import URLRouter

    from vectormlops.events import broadcast_now
    from vectormlops.routing import websocket_urlpatterns

    user = make_user("watcher", "ml_engineer")

    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/events/run.7/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        # Published from another thread, as a Celery worker would: only Redis connects the two.
        thread = threading.Thread(target=broadcast_now, args=("run.7", "epoch", {"epoch": 1, "map50": 0.5}))
        thread.start()
        message = await communicator.receive_json_from(timeout=10)
        thread.join()
        await communicator.disconnect()
        return message

    assert asyncio.run(scenario()) == {"topic": "run.7", "event": "epoch", "data": {"epoch": 1, "map50": 0.5}}


def test_websocket_refuses_anonymous(transactional_db):
    from channels.routing import URLRouter

    from vectormlops.routing import websocket_urlpatterns

    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/events/run.7/")
        communicator.scope["user"] = AnonymousUser()
        connected, _ = await communicator.connect()
        return connected

    assert asyncio.run(scenario()) is False


@pytest.mark.django_db
def test_unknown_api_route_and_method_get_the_envelope(api_as, ml_engineer):
    response = api_as(ml_engineer).get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = api_as(ml_engineer).delete("/api/schema/")
    assert response.status_code == 405
    assert response.data["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_bootstrap_creates_roles_and_prints_the_admin_login_once(capsys, monkeypatch, django_user_model):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-for-test")
    call_command("bootstrap")
    first = capsys.readouterr().out
    assert "username: admin" in first and "password: s3cret-for-test" in first
    assert set(Group.objects.values_list("name", flat=True)) >= {"annotator", "reviewer", "ml_engineer"}
    assert django_user_model.objects.get(username="admin").check_password("s3cret-for-test")
    call_command("bootstrap")
    assert "password" not in capsys.readouterr().out


@pytest.mark.django_db
def test_home_shows_each_role_its_entry_points(client, make_user):
    assert client.get("/").status_code == 302  # sign in first
    client.force_login(make_user("nobody"))
    assert "has no role yet" in client.get("/").content.decode()


def test_websocket_topics_need_their_role(transactional_db, make_user):
    from channels.routing import URLRouter

    from vectormlops.routing import websocket_urlpatterns

    annotator, engineer = make_user("ann-ws", "annotator"), make_user("eng-ws", "ml_engineer")

    async def connects(user, topic):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/events/{topic}/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert asyncio.run(connects(annotator, "dataset.vector")) is True
    assert asyncio.run(connects(annotator, "alerts.vector")) is False
    assert asyncio.run(connects(annotator, "run.3")) is False
    assert asyncio.run(connects(engineer, "alerts.vector")) is True
