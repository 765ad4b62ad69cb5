"""What the broker holds right now, for the sweepers: a queued row whose message is nowhere was lost (a flushed or
restarted Redis) and must be published again; one whose message was delivered long ago and never acknowledged was
taken by a worker that died before claiming the row, and its message goes back to the queue. Whether a running row
still has a live worker is read from the row's heartbeat in the database, never from which workers answer a
broadcast (a busy or slow one misses the reply window). The readers return None when they cannot tell (broker
unreachable, not Redis): then nobody is judged."""

import ast
import json
import logging

log = logging.getLogger(__name__)


def _described(raw) -> dict | None:
    """id, task name and first argument of one message as kombu's Redis transport stores it (JSON, protocol 2)."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # the unacked hash keeps [message, exchange, routing key]
            message = message[0]
        headers = message["headers"]
        args = ast.literal_eval(headers.get("argsrepr") or "()")
        return {"id": headers["id"], "task": headers["task"], "args": list(args)}
    except (ValueError, KeyError, TypeError, IndexError, SyntaxError):
        return None


def broker_messages(queues: list[str]) -> list[dict] | None:
    """The messages waiting in these queues and those delivered but not yet acknowledged (a worker holds them, or
    held them when it died), as {"id", "task", "args", "tag", "delivered_at"}: ``tag`` and ``delivered_at`` (a Unix
    time) only for a delivered one, None for one waiting. None when the broker cannot be read."""
    from vectormlops.celery import app

    try:
        with app.connection_for_read() as connection:
            channel = connection.default_channel
            client = getattr(channel, "client", None)
            if client is None or not hasattr(channel, "_q_for_pri"):
                return None  # not the Redis transport
            waiting = []
            for queue in queues:
                for priority in channel.priority_steps:
                    waiting += client.lrange(channel._q_for_pri(queue, priority), 0, -1)
            delivered = client.hgetall(channel.unacked_key)
            times = dict(client.zrange(channel.unacked_index_key, 0, -1, withscores=True))
    except Exception:  # noqa: BLE001 - an unreadable broker means "cannot tell", never "lost"
        log.warning("cannot read the broker's queues", exc_info=True)
        return None
    found = [{**described, "tag": None, "delivered_at": None} for raw in waiting if (described := _described(raw))]
    for tag, raw in delivered.items():
        if (described := _described(raw)) is not None:
            found.append({**described, "tag": _text(tag), "delivered_at": times.get(tag)})
    return found


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def broker_message_restore(tag: str) -> bool:
    """Put a delivered, unacknowledged message back at the head of its queue, as kombu does for a worker that shuts
    down: the entry leaves the unacknowledged hash in the same transaction (it is never delivered twice, nor restored
    again when its visibility timeout passes). False when it is no longer there (acknowledged or restored meanwhile)
    or the broker cannot be reached."""
    from kombu.utils.json import loads

    from vectormlops.celery import app

    restored = False

    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel

            def move(pipe):
                nonlocal restored
                raw = pipe.hget(channel.unacked_key, tag)
                pipe.multi()
                if raw is None:
                    restored = False
                    return
                payload, exchange, routing_key = loads(_text(raw))
                pipe.zrem(channel.unacked_index_key, tag).hdel(channel.unacked_key, tag)
                channel._do_restore_message(payload, exchange, routing_key, pipe, leftmost=True)
                restored = True

            channel.client.transaction(move, channel.unacked_key)
    except Exception:  # noqa: BLE001
        log.warning("cannot restore message %s", tag, exc_info=True)
        return False
    return restored


def stale_deliveries(messages: list[dict], task: str, *, older_than: float) -> tuple[set, dict[object, list[str]]]:
    """Split one task's messages by its first argument (a row id): those ``held`` (waiting in a queue, or delivered
    at or after ``older_than``, a Unix time) and those only delivered before it, by their tags (``stale``). A live
    worker claims its row the moment it starts the task, so a message delivered long ago whose row is still queued
    was taken by a worker that died before claiming it: it would sit unacknowledged for the visibility timeout."""
    held, stale = set(), {}
    for message in messages:
        if message["task"] != task or not message["args"]:
            continue
        key = message["args"][0]
        if message["tag"] is None or message["delivered_at"] is None or message["delivered_at"] >= older_than:
            held.add(key)
        else:
            stale.setdefault(key, []).append(message["tag"])
    return held, {key: tags for key, tags in stale.items() if key not in held}
