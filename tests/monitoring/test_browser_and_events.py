"""The monitoring page in a real browser (Debian's Chromium through Playwright), and alerts reaching a WebSocket
follower of alerts.<slug> through the real channel layer."""

import asyncio
import os
import random
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, connections
from django.utils import timezone

from apps.monitoring import selectors, services
from apps.monitoring.models import Alert
from tests.builders import dataset_row, deployment_row, model_row, robot_row, telemetry_rows
from tests.conftest import log_in


def _seed():
    dataset = dataset_row("field")
    model = model_row(dataset, 1)
    deployment_row(dataset, model)
    robot = robot_row("00e2b0b0", running=model)
    rng = random.Random(5)
    start = timezone.now() - timedelta(hours=4)
    telemetry_rows(
        robot,
        dataset,
        model,
        [
            {
                "captured_at": start + timedelta(minutes=5 * i),
                "latency_ms": rng.uniform(30, 60),
                "detections": [{"confidence": rng.uniform(0.4, 0.9), "box": [0, 0, 9, 9]}] if i % 3 else [],
            }
            for i in range(40)
        ],
    )
    services.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))
    return dataset


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_page_draws_charts_shows_pushed_alerts_and_acknowledges_them(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset = _seed()

    page = open_browser()
    # The live server (WSGI) has no WebSocket: a silent stand-in stops the page from retrying against it.
    page.add_init_script("window.WebSocket = class { constructor() {} close() {} send() {} };")
    errors = page.js_errors
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/monitoring/{dataset.slug}/")
    page.wait_for_function("window.monitoringCharts && window.monitoringCharts.length === 4")
    frames = page.evaluate("window.monitoringCharts[0].data.datasets[0].data.reduce((s, p) => s + p.y, 0)")
    assert frames == 40
    assert "00e2b0b0" in page.text_content("#fleet")

    # An alert raised elsewhere arrives as an event (the live server has no WebSocket: hand it over).
    alert, _ = services.alert_raise(
        dataset=dataset, kind="drift", message="Data drift on the fleet: brightness", value=0.9, threshold=0.2
    )
    page.evaluate("([e, d]) => window.monitoringAlertEvent(e, d)", ["alert.raised", selectors.alert_to_dict(alert)])
    row = page.locator(f'#alerts .alert-item[data-alert-id="{alert.id}"]')
    assert "brightness" in row.text_content()
    row.locator("button").click()
    page.wait_for_selector(f'#alerts .alert-item[data-alert-id="{alert.id}"] >> text=acknowledged by eng')
    alert.refresh_from_db()
    assert alert.acknowledged and alert.acknowledged_by.username == "eng"
    assert errors == []
    os.makedirs("var/screenshots", exist_ok=True)
    page.screenshot(path="var/screenshots/monitoring-dataset.png", full_page=True)


def test_a_raised_alert_reaches_followers_of_the_alerts_topic(transactional_db, make_user):
    from channels.routing import URLRouter

    from vectormlops.routing import websocket_urlpatterns

    user = make_user("watcher", "ml_engineer")
    dataset = dataset_row("live")

    def raise_in_thread():
        try:
            services.alert_raise(dataset=dataset, kind="canary", scope="model:1", message="canary ended", value=2.0)
        finally:
            connection.close()  # the thread's own connection would keep the test database from being dropped

    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/events/alerts.live/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        # Raised in a worker thread and committed there: the event is sent on commit, through Redis.
        await asyncio.to_thread(raise_in_thread)
        message = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        # The consumer read the database in asgiref's shared thread: close that thread's connection too, or
        # PostgreSQL refuses to drop the test database at the end of the session.
        await sync_to_async(connections.close_all)()
        return message

    message = asyncio.run(scenario())
    assert message["topic"] == "alerts.live" and message["event"] == "alert.raised"
    assert message["data"]["message"] == "canary ended"
    assert message["data"]["id"] == Alert.objects.get().id
