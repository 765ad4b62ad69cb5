"""The monitoring page, the admin, and the small JSON API (ml_engineer only); alerts are broadcast."""

import random
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.monitoring import services
from apps.monitoring.models import DriftReport
from apps.monitoring.presentation import alert_links
from tests.builders import dataset_row, deployment_row, image_rows, model_row, robot_row, telemetry_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def monitored():
    dataset = dataset_row()
    v1, v2 = model_row(dataset, 1), model_row(dataset, 2)
    deployment_row(dataset, v1)
    robots = [robot_row("00e2aaaa", running=v1), robot_row("00e2bbbb", running=v1), robot_row("00e2cccc", v2)]
    rng = random.Random(3)
    start = timezone.now() - timedelta(hours=3)
    for robot in robots:
        telemetry_rows(
            robot,
            dataset,
            robot.running_model,
            [
                {
                    "captured_at": start + timedelta(minutes=i),
                    "latency_ms": rng.uniform(20, 80),
                    "detections": [{"confidence": rng.uniform(0.3, 0.9), "box": [0, 0, 10, 10]}] if i % 2 else [],
                }
                for i in range(120)
            ],
        )
    image_rows(dataset, [{"meta": {"reason": "missed"}}], source="feedback", robot_serial="00e2aaaa")
    services.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))
    alert, _ = services.alert_raise(
        dataset=dataset,
        kind="drift",
        message="Data drift on the fleet: brightness (PSI 1.20)",
        value=1.2,
        threshold=0.2,
    )
    DriftReport.objects.create(
        dataset=dataset,
        computed_at=timezone.now(),
        window_start=timezone.now() - timedelta(hours=24),
        reference_size=200,
        current_size=60,
        features=[
            {
                "feature": "brightness",
                "test": "ks+psi",
                "statistic": 0.9,
                "p_value": 1e-20,
                "psi": 1.2,
                "wasserstein_normed": 3.0,
                "ref_mean": 0.65,
                "cur_mean": 0.3,
                "n_ref": 200,
                "n_cur": 60,
                "threshold": 0.2,
                "drifted": True,
            }
        ],
        drifted=True,
        drifted_features=["brightness"],
    )
    return dataset, (v1, v2), robots, alert


def test_field_metrics_api_gives_series_per_model_the_fleet_and_the_skew(monitored, api_as, ml_engineer):
    dataset, (v1, v2), robots, alert = monitored
    response = api_as(ml_engineer).get(f"/api/v1/datasets/{dataset.slug}/field-metrics?hours=24")
    assert response.status_code == 200, response.content
    body = response.json()
    models = {m["version"]: m for m in body["models"]}
    assert set(models) == {1, 2}
    assert models[1]["totals"]["frames"] == 240 and models[2]["totals"]["frames"] == 120
    assert models[1]["totals"]["detection_rate"] == pytest.approx(0.5)
    assert models[1]["totals"]["feedback"] == {"missed": 1}
    assert 20 <= models[1]["totals"]["latency_p50_ms"] <= 80
    assert sum(p["frames"] for p in models[1]["series"]) == 240
    fleet = {r["serial"]: r for r in body["fleet"]}
    assert fleet["00e2aaaa"]["frames"] == 120 and fleet["00e2aaaa"]["feedback"] == 1
    skew = {s["version"]: s for s in body["version_skew"]}
    assert (
        skew[1]["robots"] == 2
        and skew[1]["share"] == pytest.approx(2 / 3, abs=1e-3)
        and skew[1]["channel"] == "production"
    )
    one = api_as(ml_engineer).get(f"/api/v1/datasets/{dataset.slug}/field-metrics?robot=00e2cccc").json()
    assert [m["version"] for m in one["models"]] == [2]


def test_field_metrics_errors_and_permissions(monitored, api_as, annotator, ml_engineer):
    dataset, *_ = monitored
    url = f"/api/v1/datasets/{dataset.slug}/field-metrics"
    assert api_as(None).get(url).status_code == 401
    assert api_as(annotator).get(url).status_code == 403
    missing = api_as(ml_engineer).get("/api/v1/datasets/nope/field-metrics")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_dataset"
    assert api_as(ml_engineer).get(url + "?hours=0").status_code == 400


def test_acknowledge_api(monitored, api_as, annotator, ml_engineer):
    dataset, models, robots, alert = monitored
    url = f"/api/v1/alerts/{alert.id}/acknowledge"
    assert api_as(annotator).post(url).status_code == 403
    response = api_as(ml_engineer).post(url)
    assert response.status_code == 200
    assert response.json()["acknowledged"] is True and response.json()["acknowledged_by"] == ml_engineer.username
    alert.refresh_from_db()
    assert alert.acknowledged and alert.acknowledged_by == ml_engineer and alert.acknowledged_at
    assert api_as(ml_engineer).post(url).status_code == 200  # idempotent
    assert api_as(ml_engineer).post("/api/v1/alerts/999999/acknowledge").status_code == 404
    listed = api_as(ml_engineer).get(f"/api/v1/datasets/{dataset.slug}/alerts").json()["results"]
    assert [a["id"] for a in listed] == [alert.id]


def test_a_new_occurrence_after_acknowledging_opens_a_new_alert_and_alerts_are_broadcast(monitored, monkeypatch):
    dataset, models, robots, alert = monitored
    sent = []
    monkeypatch.setattr(services.alerts, "broadcast", lambda topic, event, data: sent.append((topic, event, data)))
    services.alert_raise(dataset=dataset, kind="drift", message="again", value=1.0, threshold=0.2)
    alert.refresh_from_db()
    assert alert.occurrences == 2 and alert.message == "again"
    services.alert_acknowledge(alert=alert, user=None)
    fresh, created = services.alert_raise(dataset=dataset, kind="drift", message="third", value=1.0, threshold=0.2)
    assert created and fresh.id != alert.id
    assert [(t, e) for t, e, _ in sent] == [
        ("alerts.vector", "alert.updated"),
        ("alerts.vector", "alert.acknowledged"),
        ("alerts.vector", "alert.raised"),
    ]
    assert sent[-1][2]["message"] == "third" and sent[-1][2]["id"] == fresh.id


def test_monitoring_pages(monitored, client, annotator, ml_engineer):
    dataset, models, robots, alert = monitored
    client.force_login(annotator)
    assert client.get(reverse("monitoring:home")).status_code == 403
    client.force_login(ml_engineer)
    home = client.get(reverse("monitoring:home"))
    assert home.status_code == 200 and b"/monitoring/vector/" in home.content
    page = client.get(reverse("monitoring:dataset", args=[dataset.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    for needle in (
        "chart-latency",
        "chart.umd.min.js",
        "monitoring/dataset.js",
        'id="field-metrics"',
        "00e2bbbb",
        "brightness",
        "Acknowledge",
        'id="version-skew"',
    ):
        assert needle in html, needle
    response = client.post(reverse("monitoring:alert_acknowledge", args=[alert.id]))
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged


def test_admin_lists_and_acknowledges_alerts(monitored, client, make_user):
    dataset, models, robots, alert = monitored
    client.force_login(make_user("boss", "admin"))
    for name in ("alert", "driftreport", "canarypolicy", "hourlymetric"):
        assert client.get(reverse(f"admin:monitoring_{name}_changelist")).status_code == 200, name
    response = client.post(
        reverse("admin:monitoring_alert_changelist"), {"action": "acknowledge", "_selected_action": [alert.id]}
    )
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged


def test_an_alerts_images_link_shows_its_robots_uploads_in_its_time_window(client, ml_engineer):
    # Given a robot's uploads before, during and after a performance alert (30-minute window), and another robot's.
    dataset = dataset_row("windowed")
    robot = robot_row("00e2dddd")
    now = timezone.now().replace(microsecond=0)
    opened, resolved = now - timedelta(hours=2), now - timedelta(hours=1)
    (too_early,) = image_rows(dataset, [{}], robot_serial="00e2dddd", uploaded_at=opened - timedelta(minutes=45))
    (inside,) = image_rows(dataset, [{}], robot_serial="00e2dddd", uploaded_at=opened - timedelta(minutes=10))
    (later,) = image_rows(dataset, [{}], robot_serial="00e2dddd", uploaded_at=opened + timedelta(minutes=30))
    (after,) = image_rows(dataset, [{}], robot_serial="00e2dddd", uploaded_at=resolved + timedelta(minutes=5))
    (other,) = image_rows(dataset, [{}], robot_serial="00e2eeee", uploaded_at=opened)
    alert, _ = services.alert_raise(
        dataset=dataset, kind="performance", robot=robot, message="worse", details={"window_minutes": 30}, now=opened
    )
    client.force_login(ml_engineer)

    # When it is open, its images link covers from its window's start on; once resolved, until it resolved.
    def shown():
        page = client.get(alert_links(alert)["images"])
        assert page.status_code == 200
        return {int(i) for i in re.findall(r'data-image-id="(\d+)"', page.content.decode())}, page.content.decode()

    ids, html = shown()
    assert ids == {inside.id, later.id, after.id} and 'id="time-filter"' in html
    services.alert_resolve(alert=alert, now=resolved)
    alert.refresh_from_db()
    ids, html = shown()
    assert ids == {inside.id, later.id} and too_early.id not in ids and other.id not in ids
    assert "uploaded_before=" in alert_links(alert)["images"] and "by robot 00e2dddd" in html


def test_the_grid_time_filter_rejects_a_bad_datetime(client, ml_engineer):
    dataset = dataset_row("badtime")
    client.force_login(ml_engineer)
    page = client.get(reverse("datasets:detail", args=[dataset.slug]) + "?uploaded_after=yesterday")
    assert page.status_code == 200 and "uploaded_after must be a date and time" in page.content.decode()
