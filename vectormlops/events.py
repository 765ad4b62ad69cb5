"""Live updates: services publish small JSON events to a topic; browsers follow topics over /ws/events/<topic>/.

Topics are plain strings such as ``dataset.vector``, ``run.12``, ``deployments.vector``, ``alerts.vector``.
"""

import logging
import re

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
