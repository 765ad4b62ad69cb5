"""The event stream under load, through the real stack: daphne, the consumers and channels_redis on a private Valkey,
with a browser's WebSockets as clients. Many sockets on several topics, events sent as fast as several publishers can,
while other sockets come and go (opened and closed at once, or cut by closing their page): every steady socket gets
every event of its topic once, in order, and the server logs no traceback."""

import asyncio
import threading

import pytest
from channels.layers import get_channel_layer

from tests.conftest import log_in
from tests.faults import private_redis
from tests.live_web import Web
from vectormlops.events import topic_group

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOPICS = [f"run.{n}" for n in range(1, 5)]
SOCKETS_PER_TOPIC = 10
EVENTS_PER_TOPIC = 200

OPEN_SOCKETS = """async ([topics, perTopic]) => {
  window.got = window.got || {};
  const opened = [];
  for (const topic of topics) {
    for (let i = 0; i < perTopic; i++) {
      const key = `${topic}#${i}`;
      window.got[key] = [];
      const socket = new WebSocket(`ws://${location.host}/ws/events/${topic}/`);
      socket.onmessage = (message) => {
        const body = JSON.parse(message.data);
        if (body.event) window.got[key].push(body.data.n);
      };
      opened.push(new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onclose = (closed) => reject(new Error(`${key} closed with ${closed.code}`));
      }));
    }
  }
  await Promise.all(opened);
  return opened.length;
}"""

# Sockets that come and go while the events flow: opened and closed at once, again and again.
CHURN = """([topics, rounds]) => {
  window.churned = 0;
  const one = (n) => {
    if (n >= rounds) return;
    const socket = new WebSocket(`ws://${location.host}/ws/events/${topics[n % topics.length]}/`);
    const next = () => { window.churned += 1; one(n + 4); };
    socket.onopen = () => socket.close();
    socket.onclose = next;
  };
  for (let lane = 0; lane < 4; lane++) one(lane);
  window.churnRounds = rounds;
}"""


def publish(topic: str, count: int, errors: list) -> None:
    """Send ``count`` numbered events to ``topic`` as fast as one publisher can (its own loop, like a worker)."""

    async def send_all():
        layer = get_channel_layer()
        for n in range(count):
            message = {"type": "topic.event", "topic": topic, "event": "tick", "data": {"n": n}}
            await layer.group_send(topic_group(topic), message)

    try:
        asyncio.run(send_all())
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_many_sockets_and_events_lose_nothing_and_log_no_traceback(open_browser, make_user, settings, tmp_path):
    make_user("eng", "ml_engineer")
    with private_redis(settings) as (redis_url, _server):
        web = Web(redis_url, tmp_path / "web.log").start()
        try:
            page = open_browser()
            log_in(page, web.server, "eng")
            page.goto(f"{web.url}/")
            assert page.evaluate(OPEN_SOCKETS, [TOPICS, SOCKETS_PER_TOPIC]) == len(TOPICS) * SOCKETS_PER_TOPIC
            cut = open_browser()  # more sockets on the same topics, cut mid-stream when their page closes
            log_in(cut, web.server, "eng")
            cut.goto(f"{web.url}/")
            cut.evaluate(OPEN_SOCKETS, [TOPICS, 5])
            churner = open_browser()
            log_in(churner, web.server, "eng")
            churner.goto(f"{web.url}/")

            errors: list = []
            publishers = [threading.Thread(target=publish, args=(t, EVENTS_PER_TOPIC, errors)) for t in TOPICS]
            churner.evaluate(CHURN, [TOPICS, 40])
            for thread in publishers:
                thread.start()
            cut.wait_for_function(f"Object.values(window.got).some((g) => g.length >= {EVENTS_PER_TOPIC // 5})")
            cut.context.close()
            for thread in publishers:
                thread.join()
            assert errors == []

            page.wait_for_function(
                f"Object.values(window.got).every((g) => g.length >= {EVENTS_PER_TOPIC})", timeout=180_000
            )
            churner.wait_for_function("window.churned >= window.churnRounds", timeout=120_000)
            got = page.evaluate("window.got")
            assert len(got) == len(TOPICS) * SOCKETS_PER_TOPIC
            for key, numbers in got.items():
                assert numbers == list(range(EVENTS_PER_TOPIC)), f"{key}: lost, repeated or out of order"
            # the server still serves a new follower
            assert page.evaluate(OPEN_SOCKETS, [["run.99"], 1]) == 1
            assert page.js_errors == [] and churner.js_errors == []
        finally:
            web.stop()
        log = web.output()
        assert "WSCONNECT" in log
        assert "Traceback" not in log, log[-5000:]
