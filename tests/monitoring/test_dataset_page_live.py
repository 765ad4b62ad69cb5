"""The monitoring page of a dataset follows its alerts live, through a real web server (daphne) and a private Valkey:
a raised alert is on the page without a reload; when the web server dies and starts again, what changed meanwhile
(an alert raised, another acknowledged, another refreshed) is on the page after it reconnects, and the server logs no
traceback."""

import pytest

from apps.monitoring.models import Alert
from apps.monitoring.services.alerts import alert_acknowledge, alert_raise
from tests.builders import dataset_row
from tests.conftest import log_in
from tests.faults import private_redis
from tests.live_web import Web, in_thread

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOPIC = "alerts.fleet"


def raise_alert(dataset, scope: str, message: str) -> Alert:
    alert, _created = in_thread(
        alert_raise, dataset=dataset, kind="drift", scope=scope, value=0.4, threshold=0.2, message=message
    )
    return alert


def alert_item(page, alert: Alert):
    return page.locator(f'#alerts .alert-item[data-alert-id="{alert.pk}"]')


def test_the_monitoring_page_shows_alerts_live_and_catches_up_after_the_server_was_down(
    open_browser, make_user, settings, tmp_path
):
    eng = make_user("eng", "ml_engineer")
    dataset = dataset_row("fleet")
    old = raise_alert(dataset, "robot:a1", "Robot a1 sees darker frames")
    with private_redis(settings) as (redis_url, _server):
        web = Web(redis_url, tmp_path / "web.log").start()
        try:
            page = open_browser()
            log_in(page, web.server, "eng")
            page.goto(f"{web.url}/monitoring/fleet/")
            page.wait_for_function(f"VectorEvents.synced('{TOPIC}') === 1")
            assert alert_item(page, old).count() == 1

            # live: a new alert appears on top
            live = raise_alert(dataset, "fleet", "The fleet's images drifted")
            alert_item(page, live).wait_for()
            assert page.locator("#alerts .alert-item").first.get_attribute("data-alert-id") == str(live.pk)
            assert page.evaluate(f"VectorEvents.opens('{TOPIC}')") == 1

            # the web server dies; meanwhile one alert is raised, one acknowledged and one seen again
            web.kill()
            missed = raise_alert(dataset, "robot:b2", "Robot b2 sees blurrier frames")
            in_thread(alert_acknowledge, alert=live, user=eng)
            raise_alert(dataset, "robot:a1", "Robot a1 sees much darker frames")
            web.start()

            page.wait_for_function(f"VectorEvents.synced('{TOPIC}') >= 2", timeout=90_000)
            assert page.evaluate(f"VectorEvents.opens('{TOPIC}')") >= 2
            alert_item(page, missed).wait_for()
            assert "Robot b2 sees blurrier frames" in alert_item(page, missed).text_content()
            assert "acknowledged by eng" in alert_item(page, live).text_content()
            assert alert_item(page, live).locator("form.ack-form").count() == 0
            refreshed = alert_item(page, old).text_content()
            assert "Robot a1 sees much darker frames" in refreshed and "(2×)" in refreshed
            assert page.locator("#alerts .alert-item").count() == 3, "each alert once"
            assert page.evaluate("window.monitoringRefreshes") >= 2, "the figures were fetched again too"

            # and events flow again
            in_thread(alert_acknowledge, alert=missed, user=eng)
            alert_item(page, missed).locator("text=acknowledged by eng").wait_for()
            page.screenshot(path=str(tmp_path / "monitoring-live.png"), full_page=True)
            assert page.js_errors == []
        finally:
            web.stop()
        assert "Traceback" not in web.output()
