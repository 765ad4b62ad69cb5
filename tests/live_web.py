"""A real web server (daphne: HTTP and WebSocket) on this test's database and a private Valkey, which a test may kill
and start again (a dropped live stream), and a helper that runs a service in another thread (Playwright owns this
thread's event loop, and the events a service sends after commit are refused inside a running loop)."""

import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
from django.conf import settings
from django.db import connections

from tests.conftest import free_port, test_database_url


class Web:
    """``Web(redis_url, log_path)``: start(), kill() (SIGKILL, as a crash), stop(); ``url`` for the browser."""

    def __init__(self, redis_url: str, log_path):
        self.redis_url, self.log_path = redis_url, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = SimpleNamespace(url=self.url)  # what tests.conftest.log_in expects
        self.process = self.log = None

    def start(self) -> "Web":
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": self.redis_url,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),  # this test's media folder: the server serves its images
            "PYTHONUNBUFFERED": "1",
        }
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "vectormlops.asgi:application"],
            cwd=settings.BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/accounts/login/", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()[-3000:]
            time.sleep(0.2)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        if self.log is not None:
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def in_thread(function, **kwargs):
    """Run ``function(**kwargs)`` in another thread and return its result (exceptions are raised here)."""
    result = {}

    def target():
        try:
            result["value"] = function(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc
        finally:
            connections.close_all()  # PostgreSQL drops the test database only when no connection is left

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")
