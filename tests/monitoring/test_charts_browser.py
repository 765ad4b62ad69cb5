"""The monitoring charts in a real browser: a time axis for the chosen period (24 h, 7 d, 30 d) whose labels fall
inside it, empty hours drawn as gaps, production and canary side by side, and a live refresh."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.monitoring import services
from tests.builders import dataset_row, deployment_row, model_row, robot_row, telemetry_rows
from tests.conftest import log_in

HOUR_MS = 3600 * 1000


def _frames(moments, detect=True):
    return [
        {
            "captured_at": m,
            "latency_ms": 40.0,
            "detections": [{"confidence": 0.7, "box": [0, 0, 9, 9]}] if detect else [],
        }
        for m in moments
    ]


def _seed():
    dataset = dataset_row("charts")
    production, canary = model_row(dataset, 1), model_row(dataset, 2)
    deployment_row(dataset, production, at=timezone.now() - timedelta(days=40))
    deployment_row(dataset, canary, channel="canary", percent=20)
    robot = robot_row("00e2c0a1", running=production)
    now = timezone.now()
    # Production: one frame every 12 hours over 29 days, and one an hour over the last 5 hours (a gap before them).
    moments = [now - timedelta(hours=12 * i + 1) for i in range(58)] + [
        now - timedelta(minutes=60 * i + 5) for i in range(5)
    ]
    telemetry_rows(robot, dataset, production, _frames(moments))
    telemetry_rows(
        robot, dataset, canary, _frames([now - timedelta(minutes=30 + 60 * i) for i in range(3)], detect=False)
    )
    # Rows received after `until` wait for the next pass: take the clock after writing them (slow on a busy machine).
    services.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))
    return dataset, robot, production


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_each_period_has_its_own_time_axis_with_gaps_and_both_channels(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset, robot, production = _seed()
    page = open_browser()
    page.add_init_script("window.WebSocket = class { constructor() {} close() {} send() {} };")
    log_in(page, live_server, "eng")
    os.makedirs("var/screenshots", exist_ok=True)

    for hours, label_length in ((24, 5), (168, 5), (720, 5)):
        page.goto(f"{live_server.url}/monitoring/{dataset.slug}/?hours={hours}")
        page.wait_for_function("window.monitoringCharts && window.monitoringCharts.length === 4")
        axis = page.evaluate(
            """() => { const x = window.monitoringCharts[0].scales.x;
                 return {min: x.min, max: x.max, ticks: x.ticks.map(t => t.value),
                         labels: x.ticks.map(t => x.getLabelForValue ? x.options.ticks.callback(t.value) : '')}; }"""
        )
        span = axis["max"] - axis["min"]
        assert hours * HOUR_MS <= span <= (hours + 1) * HOUR_MS
        assert axis["ticks"] and all(axis["min"] <= t <= axis["max"] for t in axis["ticks"])
        assert all(len(x) == label_length for x in axis["labels"])
        if hours == 24:
            assert sum("-" in x for x in axis["labels"]) == 1  # the date at midnight, hours of the day elsewhere
        else:
            assert len(set(axis["labels"])) == len(axis["labels"]) and all("-" in x for x in axis["labels"])
        series = page.evaluate(
            "window.monitoringCharts[0].data.datasets.map(d => ({label: d.label, ys: d.data.map(p => p.y)}))"
        )
        labels = [s["label"] for s in series]
        assert labels == ["v1 · production", "v2 · canary"]
        production_ys = series[0]["ys"]
        assert len(production_ys) in (hours, hours + 1)  # one point per hour of the period
        assert None in production_ys  # empty hours are gaps, not missing ticks
        expected = 5 + sum(1 for i in range(58) if 12 * i + 1 < hours)
        assert sum(y for y in production_ys if y) == expected
        page.screenshot(path=f"var/screenshots/monitoring-{hours}h.png", full_page=True)

    # Live refresh: new telemetry aggregated, then the page fetches the figures again (on the aggregation's event).
    page.goto(f"{live_server.url}/monitoring/{dataset.slug}/?hours=24")
    page.wait_for_function("window.monitoringCharts && window.monitoringCharts.length === 4")
    telemetry_rows(robot, dataset, production, _frames([timezone.now() - timedelta(minutes=2)] * 7))
    services.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))
    page.evaluate("window.monitoringAlertEvent('metrics.updated', {dataset: 'charts'})")
    page.wait_for_function("window.monitoringRefreshes === 1")
    total = page.evaluate("window.monitoringCharts[0].data.datasets[0].data.reduce((s, p) => s + (p.y || 0), 0)")
    assert total == 5 + 2 + 7
    assert page.js_errors == []
