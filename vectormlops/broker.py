"""What the broker and the workers hold right now, for the sweeper: a queued row whose message is nowhere was lost
(a flushed or restarted Redis) and must be published again; a running row that no live worker is executing lost
its worker. Every reader returns None when it cannot tell (broker unreachable, not Redis): then nobody is judged."""

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


def worker_tasks(timeout_s: float = 2.0) -> list[dict] | None:
    """The tasks live workers are executing or have reserved, as {"id", "task", "args"}; [] when no worker
    answered (none alive), None when the broker cannot be reached. A solo-pool worker busy with a task cannot
    answer: its tasks are found by other means (a training run's heartbeat)."""
    from vectormlops.celery import app

    try:
        inspect = app.control.inspect(timeout=timeout_s)
        replies = [inspect.active() or {}, inspect.reserved() or {}]
    except Exception:  # noqa: BLE001
        log.warning("cannot ask the workers what they run", exc_info=True)
        return None
    return [
        {"id": task.get("id"), "task": task.get("name") or task.get("type"), "args": list(task.get("args") or [])}
        for reply in replies
        for tasks in reply.values()
        for task in tasks
    ]
