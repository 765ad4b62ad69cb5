"""Hourly aggregates match the raw telemetry and feedback exactly; each raw row counts once; pruning is safe."""

import random
from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.deployments.models import TelemetryRecord
from apps.monitoring import histograms, selectors, services
from apps.monitoring.models import DriftReport, HourlyMetric
from apps.monitoring.tasks import telemetry_aggregate_task, telemetry_prune_task
from tests.builders import dataset_row, image_rows, model_row, robot_row, telemetry_rows

pytestmark = pytest.mark.django_db


def _frames(rng: random.Random, start, count: int, *, hours: int = 3) -> list[dict]:
    frames = []
    for _ in range(count):
        n = rng.choice([0, 0, 1, 1, 1, 2, 3])
        frames.append(
            {
                "captured_at": start + timedelta(seconds=rng.uniform(0, hours * 3600 - 1)),
                "latency_ms": rng.lognormvariate(3.6, 0.5) if rng.random() > 0.05 else None,
                "detections": [{"confidence": rng.uniform(0.25, 1.0), "box": [10, 10, 40, 30]} for _ in range(n)],
                "brightness": rng.uniform(0.2, 0.8),
            }
        )
    return frames


@pytest.fixture
def fleet():
    """A dataset, two models, three robots with telemetry over three hours and feedback uploads."""
    rng = random.Random(7)
    dataset = dataset_row()
    v1, v2 = model_row(dataset, 1), model_row(dataset, 2)
    robots = [robot_row(f"00e2000{i}", running=v1 if i < 2 else v2) for i in range(3)]
    start = (timezone.now() - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    for i, robot in enumerate(robots):
        telemetry_rows(robot, dataset, v1 if i < 2 else v2, _frames(rng, start, 400))
    # Feedback: two name their model in meta, the rest are blamed on what the robot reports running.
    image_rows(
        dataset,
        [
            {"robot_serial": "00e20000", "meta": {"reason": "missed", "model_id": v2.id}},
            {"robot_serial": "00e20000", "meta": {"reason": "missed"}},
            {"robot_serial": "00e20001", "meta": {"reason": "false_positive"}},
            {"robot_serial": "00e20002", "meta": {"reason": "wrong_box", "model_id": str(v2.id)}},
            {"robot_serial": "00e20002", "meta": {}},
        ],
        source="feedback",
        captured_at=start + timedelta(minutes=30),
    )
    image_rows(dataset, [{"robot_serial": "00e20000"}], source="camera")  # not feedback: not counted
    return dataset, (v1, v2), robots, start


def _aggregate_now():
    return services.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))


def test_fleet_buckets_match_the_raw_records_exactly(fleet):
    dataset, (v1, v2), robots, start = fleet
    result = _aggregate_now()
    assert result["records"] == 1200
    assert result["feedback"] == 5

    expected = defaultdict(Counter)
    for rec in TelemetryRecord.objects.all():
        key = (rec.model_id, rec.captured_at.replace(minute=0, second=0, microsecond=0))
        expected[key]["frames"] += 1
        expected[key]["frames_with_detection"] += rec.detection_count > 0
        expected[key]["detections"] += rec.detection_count
        expected[key]["latency_count"] += rec.latency_ms is not None
    fleet_rows = {(m.model_id, m.hour): m for m in HourlyMetric.objects.filter(robot__isnull=True, frames__gt=0)}
    assert set(fleet_rows) == set(expected)
    for key, counts in expected.items():
        row = fleet_rows[key]
        assert (row.frames, row.frames_with_detection, row.detections, row.latency_count) == (
            counts["frames"],
            counts["frames_with_detection"],
            counts["detections"],
            counts["latency_count"],
        )

    # Per-robot buckets add up to the fleet's.
    for (model_id, hour), row in fleet_rows.items():
        per_robot = HourlyMetric.objects.filter(model_id=model_id, hour=hour, robot__isnull=False)
        assert sum(r.frames for r in per_robot) == row.frames
        assert sum(r.detections for r in per_robot) == row.detections


def test_feedback_counts_by_reason_and_model(fleet):
    dataset, (v1, v2), robots, start = fleet
    _aggregate_now()
    fleet_rows = HourlyMetric.objects.filter(robot__isnull=True, feedback_total__gt=0)
    by_model = defaultdict(Counter)
    for row in fleet_rows:
        by_model[row.model_id].update(row.feedback)
    # robot 0 runs v1 but one report names v2; robot 2 runs v2.
    assert by_model[v1.id] == Counter({"missed": 1, "false_positive": 1})
    assert by_model[v2.id] == Counter({"missed": 1, "wrong_box": 1, "unspecified": 1})
    robot0 = HourlyMetric.objects.filter(robot=robots[0], feedback_total__gt=0)
    assert sum(r.feedback_total for r in robot0) == 2


def test_merged_quantiles_and_means_match_raw_within_bucket_resolution(fleet):
    dataset, (v1, v2), robots, start = fleet
    _aggregate_now()
    metrics = selectors.field_metrics(dataset=dataset, since=start - timedelta(hours=1))
    totals = {m["model_id"]: m["totals"] for m in metrics["models"]}
    for model in (v1, v2):
        raw = TelemetryRecord.objects.filter(model=model)
        latencies = np.array([r.latency_ms for r in raw if r.latency_ms is not None])
        confidences = np.array([r.top_confidence for r in raw if r.top_confidence is not None])
        merged = HourlyMetric.objects.filter(model=model, robot__isnull=True)
        hist = {}
        for row in merged:
            histograms.hist_add(hist, row.latency_hist)
        for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms")):
            true = float(np.percentile(latencies, q * 100, method="inverted_cdf"))
            low, high = histograms.latency_bin_bounds(histograms.latency_quantile_bin(hist, q))
            assert low <= true < high, (q, true, low, high)
            assert low <= totals[model.id][name] < high
            assert abs(totals[model.id][name] - true) / true < 0.1
        assert totals[model.id]["mean_confidence"] == pytest.approx(confidences.mean(), abs=1e-4)
        true_p50 = float(np.percentile(confidences, 50, method="inverted_cdf"))
        assert abs(totals[model.id]["confidence_p50"] - true_p50) <= 0.05
        assert totals[model.id]["frames"] == raw.count()
        assert totals[model.id]["detection_rate"] == pytest.approx(
            raw.filter(detection_count__gt=0).count() / raw.count(), abs=1e-4
        )


def test_each_raw_row_counts_once_across_runs(fleet):
    dataset, (v1, v2), robots, start = fleet
    _aggregate_now()
    assert _aggregate_now() == {"records": 0, "feedback": 0, "buckets": 0}
    telemetry_rows(robots[0], dataset, v1, _frames(random.Random(9), start, 50))
    assert _aggregate_now()["records"] == 50
    total = sum(HourlyMetric.objects.filter(robot__isnull=True).values_list("frames", flat=True))
    assert total == TelemetryRecord.objects.count() == 1250


def test_rows_received_after_the_cutoff_wait_and_block_later_ids(fleet):
    dataset, (v1, v2), robots, start = fleet
    _aggregate_now()
    first = telemetry_rows(robots[0], dataset, v1, _frames(random.Random(1), start, 10))
    # The middle rows look as if their insert were still in flight: received after the cutoff.
    late_ids = [r.id for r in first[4:6]]
    TelemetryRecord.objects.filter(id__in=late_ids).update(received_at=timezone.now() + timedelta(hours=1))
    result = services.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))
    assert result["records"] == 4  # stops before the first late id, even though ids after it are old enough
    result = services.telemetry_aggregate(until=timezone.now() + timedelta(hours=2))
    assert result["records"] == 6
    total = sum(HourlyMetric.objects.filter(robot__isnull=True).values_list("frames", flat=True))
    assert total == TelemetryRecord.objects.count()


def test_prune_deletes_only_old_aggregated_rows_and_keeps_the_buckets(fleet):
    dataset, (v1, v2), robots, start = fleet
    _aggregate_now()
    extra = telemetry_rows(robots[1], dataset, v1, _frames(random.Random(2), start, 20))  # not aggregated yet
    TelemetryRecord.objects.update(received_at=timezone.now() - timedelta(days=30))
    frames_before = sum(HourlyMetric.objects.filter(robot__isnull=True).values_list("frames", flat=True))
    deleted = services.telemetry_prune(older_than=timezone.now() - timedelta(days=14))
    assert deleted == 1200
    assert set(TelemetryRecord.objects.values_list("id", flat=True)) == {r.id for r in extra}
    assert sum(HourlyMetric.objects.filter(robot__isnull=True).values_list("frames", flat=True)) == frames_before


def test_tasks_run_and_are_scheduled_in_beat(fleet, settings):
    settings.MONITORING_AGGREGATION_LAG_S = 0
    telemetry_aggregate_task.apply()
    assert HourlyMetric.objects.filter(robot__isnull=True).exists()
    settings.MONITORING_RAW_RETENTION_DAYS = 0
    dataset = fleet[0]
    for days in (100, 10):
        DriftReport.objects.create(
            dataset=dataset, computed_at=timezone.now() - timedelta(days=days), window_start=timezone.now()
        )
    telemetry_prune_task.apply()
    assert TelemetryRecord.objects.count() == 0
    assert HourlyMetric.objects.filter(robot__isnull=True).exists()
    assert DriftReport.objects.count() == 1  # only the one past 90 days went
    scheduled = {t.task: t for t in PeriodicTask.objects.filter(task__startswith="apps.monitoring.tasks.")}
    assert set(scheduled) == {
        "apps.monitoring.tasks.telemetry_aggregate_task",
        "apps.monitoring.tasks.canary_guard_task",
        "apps.monitoring.tasks.drift_compute_task",
        "apps.monitoring.tasks.telemetry_prune_task",
        "apps.monitoring.tasks.performance_check_task",
    }
    every = scheduled["apps.monitoring.tasks.telemetry_aggregate_task"].interval
    assert (every.every, every.period) == (1, "minutes")
    every = scheduled["apps.monitoring.tasks.drift_compute_task"].interval
    assert (every.every, every.period) == (1, "hours")


def test_the_beat_task_aggregates_through_a_real_worker(transactional_db, celery_worker_thread, settings):
    """The task name in the beat schedule reaches a real worker on the real broker and aggregates."""
    import time

    settings.MONITORING_AGGREGATION_LAG_S = 0
    dataset = dataset_row()
    model = model_row(dataset, 1)
    robot = robot_row("00e2work", running=model)
    telemetry_rows(robot, dataset, model, _frames(random.Random(4), timezone.now() - timedelta(hours=1), 30, hours=1))
    from vectormlops.celery import app

    # By name, as beat sends it (the schedule rows themselves are checked in a non-transactional test: a
    # transactional test's flush may have removed them here).
    app.send_task("apps.monitoring.tasks.telemetry_aggregate_task")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(HourlyMetric.objects.filter(robot__isnull=True).values_list("frames", flat=True)) == 30:
            break
        time.sleep(0.2)
    assert sum(HourlyMetric.objects.filter(robot__isnull=True).values_list("frames", flat=True)) == 30
