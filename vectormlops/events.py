"""Live updates: services publish small JSON events to a topic; browsers follow topics over /ws/events/<topic>/.

Topics are plain strings such as ``dataset.vector``, ``run.12``, ``deployments.vector``, ``alerts.vector``.
"""

import asyncio
import logging
import os
import queue
import re
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)
TOPIC_RE = re.compile(r"^[a-z_]+(\.[A-Za-z0-9_-]+)?$")


def topic_group(topic: str) -> str:
    """Channel-layer group names allow only [A-Za-z0-9._-]."""
    if not TOPIC_RE.match(topic):
        raise ValueError(f"bad topic {topic!r}")
    return f"topic.{topic}"


def broadcast_now(topic: str, event: str, data: dict) -> None:
    """Send now; a broken Redis must not break the write that triggered the event."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            topic_group(topic), {"type": "topic.event", "topic": topic, "event": event, "data": data}
        )
    except Exception:  # noqa: BLE001 - live updates are best effort
        log.warning("could not broadcast %s on %s", event, topic, exc_info=True)


def broadcast(topic: str, event: str, data: dict) -> None:
    """Send once the current transaction commits, so listeners never see rolled-back state."""
    transaction.on_commit(lambda: broadcast_now(topic, event, data))


class _Publisher:
    """One thread per process sends queued events on its own, lasting event loop: a request that only queues never
    waits for Redis, and the channel layer keeps one connection (``async_to_sync`` opens one per call). The queue is
    bounded; when Redis is slow and it is full, events are dropped: a live page re-syncs when it reconnects."""

    MAX_QUEUED = 1000

    def __init__(self):
        self.lock = threading.Lock()
        self.pid = None
        self.queue: queue.Queue = queue.Queue()

    def put(self, topic: str, event: str, data: dict) -> None:
        if self.pid != os.getpid():  # first use, or a forked worker: the parent's thread did not come along
            with self.lock:
                if self.pid != os.getpid():
                    self.queue = queue.Queue(maxsize=self.MAX_QUEUED)
                    threading.Thread(target=self._run, args=(self.queue,), name="events-publisher", daemon=True).start()
                    self.pid = os.getpid()
        try:
            self.queue.put_nowait((topic, event, data))
        except queue.Full:
            log.warning("live-update queue full: dropped %s on %s", event, topic)

    def _run(self, pending: queue.Queue) -> None:
        loop = asyncio.new_event_loop()
        while True:
            batch = [pending.get()]
            while len(batch) < 100:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            try:
                loop.run_until_complete(self._send(batch))
            except Exception:  # noqa: BLE001 - live updates are best effort; the thread must live on
                log.warning("could not broadcast %d events", len(batch), exc_info=True)

    @staticmethod
    async def _send(batch: list) -> None:
        layer = get_channel_layer()
        for topic, event, data in batch:
            await layer.group_send(
                topic_group(topic), {"type": "topic.event", "topic": topic, "event": event, "data": data}
            )


_publisher = _Publisher()


def broadcast_soon(topic: str, event: str, data: dict) -> None:
    """Like ``broadcast``, but the send happens on the publisher thread: for hot paths (every uploaded image)."""
    topic_group(topic)  # a bad topic fails here, in the caller
    transaction.on_commit(lambda: _publisher.put(topic, event, data))
