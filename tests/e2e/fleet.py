"""The end-to-end tests' world, built in one place: a web server, virtual Vectors and (when asked) a Celery worker as
child processes with their logs, an API client of an ml_engineer, and the agent's command line."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.conftest import free_port, test_database_url
from vectormlops.services import api_token_create

PYTHON = sys.executable


def wait_for(what: str, check, timeout: float = 120.0, every: float = 0.5):
    """Poll ``check`` until it returns something truthy (which is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)


class Processes:
    """Child processes with their logs; all stopped at the end."""

    def __init__(self, folder: Path, env: dict):
        self.folder, self.env, self.children = folder, env, {}

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        process = subprocess.Popen(
            args, cwd=settings.BASE_DIR, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        self.children[name] = (process, log)
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig=signal.SIGTERM, timeout: float = 30) -> int:
        process, log = self.children.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
        return process.returncode

    def stop_all(self) -> None:
        for process, _ in self.children.values():
            if process.poll() is None:
                process.terminate()
        for name in list(self.children):
            self.stop(name, timeout=10)


def web_args(port: int) -> list[str]:
    return [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "vectormlops.asgi:application"]


def start_worker(processes: Processes, port: int) -> None:
    processes.start(
        "worker",
        [PYTHON, "-m", "celery", "-A", "vectormlops", "worker", "-Q", "default,training", "--pool", "solo",
         "-n", f"e2e-{port}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
    )  # fmt: skip


def _sdk_config(home: Path) -> str:
    path = home / ".anki_vector" / "sdk_config.ini"
    return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def fleet(tmp_path: Path, ml_engineer, redis_url: str, *, serials: dict, enrollment_key: str, poll_after_s: int,
          worker: bool = False):  # fmt: skip
    """Start the web server, a virtual Vector per serial (serial → scene seed) and, with ``worker``, a Celery worker;
    yield the world the tests drive (its ``processes`` are stopped at the end)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "TRAINING_DIR": str(settings.TRAINING_DIR),
        "ROBOT_ENROLLMENT_KEY": enrollment_key,
        "ROBOT_POLL_AFTER_S": str(poll_after_s),
        "PYTHONUNBUFFERED": "1",
    }
    robot_env = {"HOME": str(home), "VECTOR_AGENT_CONFIG": str(tmp_path / "agent" / "config.json")}
    processes = Processes(tmp_path, env)
    port = free_port()
    processes.start("web", web_args(port))
    if worker:
        start_worker(processes, port)
    for serial, seed in serials.items():
        processes.start(
            f"vector-{serial}",
            [PYTHON, "-m", "vectorsim", "--serial", serial, "--home", str(home), "--seed", str(seed)],
        )
    url = f"http://127.0.0.1:{port}"

    def web_up():
        try:
            return httpx.get(url + "/api/v1/datasets", timeout=2).status_code in (401, 403)
        except httpx.TransportError:
            return False

    api = None
    try:
        wait_for("the web server", web_up, timeout=60)
        for serial in serials:
            wait_for(f"virtual Vector {serial}", lambda s=serial: s in _sdk_config(home), timeout=30)
        _, key = api_token_create(user=ml_engineer, expires_in=None)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Token {key}"}, timeout=30)
        yield {
            "url": url,
            "port": port,
            "web_up": web_up,
            "api": api,
            "processes": processes,
            "robot_env": robot_env,
            "data": tmp_path / "agent-data",
            "redis_url": redis_url,
        }
    finally:
        if api is not None:
            api.close()
        processes.stop_all()


def agent_cli(world, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the agent's command line as a robot's machine would (its data folder and SDK configuration)."""
    return subprocess.run(
        [PYTHON, "-m", "agent", "--data-dir", str(world["data"]), *args],
        cwd=settings.BASE_DIR,
        env={**world["processes"].env, **world["robot_env"]},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
