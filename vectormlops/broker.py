"""What the broker holds right now, for the sweepers: a queued row whose message is nowhere was lost (a flushed or
restarted Redis) and must be published again. Whether a running row still has a live worker is read from the row's
heartbeat in the database, never from which workers answer a broadcast (a busy or slow one misses the reply window).
The reader returns None when it cannot tell (broker unreachable, not Redis): then nobody is judged."""

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
    held them when it died), as {"id", "task", "args"}. None when the broker cannot be read."""
    from vectormlops.celery import app

    try:
        with app.connection_for_read() as connection:
            channel = connection.default_channel
            client = getattr(channel, "client", None)
            if client is None or not hasattr(channel, "_q_for_pri"):
                return None  # not the Redis transport
            raws = []
            for queue in queues:
                for priority in channel.priority_steps:
                    raws += client.lrange(channel._q_for_pri(queue, priority), 0, -1)
            raws += client.hvals(channel.unacked_key)
    except Exception:  # noqa: BLE001 - an unreadable broker means "cannot tell", never "lost"
        log.warning("cannot read the broker's queues", exc_info=True)
        return None
    return [described for raw in raws if (described := _described(raw)) is not None]
