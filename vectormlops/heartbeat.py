"""A thread that beats on a timer while this process lives, for long work whose row a sweeper judges by its
heartbeat: a killed process stops beating and its row is taken over; a live one never looks lost, however long one
step of its work (unpacking a big archive, one slow file) takes."""

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections, connection

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``interval_s`` seconds until stopped; a failed beat is logged and the next one tried (a
    sweeper allows several missed beats). Use it as a context manager around the work."""

    def __init__(self, beat: Callable[[], object], *, interval_s: float, name: str):
        super().__init__(name=name, daemon=True)
        self.beat, self.interval_s = beat, interval_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop_event.wait(self.interval_s):
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - a missed beat is retried
                    log.warning("%s: a beat failed", self.name, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own database connection

    def __enter__(self) -> "Heartbeat":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_event.set()
        self.join(timeout=max(5.0, 2 * self.interval_s))
