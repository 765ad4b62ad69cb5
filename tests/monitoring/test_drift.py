"""Drift: the production model's training images are the reference; what robots sent recently is compared."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from apps.datasets.models import Image
from apps.monitoring import services, statistics
from apps.monitoring.models import Alert, DriftReport
from apps.monitoring.tasks import drift_compute_task
from tests.builders import dataset_row, deployment_row, image_rows, robot_row, telemetry_rows, trained_model_row

pytestmark = pytest.mark.django_db


def _image_stats(rng: np.random.Generator, n: int, brightness: float) -> list[dict]:
    """Camera-like statistics: brightness around a level, the rest drawn the same way every time."""
    out = []
    for _ in range(n):
        b = float(np.clip(rng.normal(brightness, 0.05), 0, 1))
        out.append(
            {
                "brightness": b,
                "contrast": float(np.clip(rng.normal(0.2, 0.03), 0, 1)),
                "sharpness": float(rng.lognormal(5.0, 0.4)),
                "color_histogram": [float(v) for c in range(3) for v in rng.dirichlet(np.ones(8) * 4)],
            }
        )
    return out


def _boxes(rng: np.random.Generator, n: int) -> list[list[list[float]]]:
    return [
        [
            [
                float(rng.uniform(0, 100)),
                float(rng.uniform(0, 50)),
                float(rng.uniform(20, 40)),
                float(rng.uniform(15, 30)),
            ]
        ]
        for _ in range(n)
    ]


@pytest.fixture
def production():
    """A production model trained on 200 bright images (brightness ≈ 0.65) with one box each."""
    rng = np.random.default_rng(42)
    dataset = dataset_row()
    reference = image_rows(dataset, _image_stats(rng, 200, 0.65), source="upload")
    model = trained_model_row(dataset, reference, boxes=_boxes(rng, 200))
    deployment_row(dataset, model)
    return dataset, model, reference


def test_dark_recent_frames_raise_a_drift_alert_naming_brightness(production):
    dataset, model, reference = production
    rng = np.random.default_rng(1)
    now = timezone.now()
    robot = robot_row("00e2dark", running=model)
    recent = image_rows(
        dataset,
        _image_stats(rng, 60, 0.30),
        uploaded_at=now - timedelta(hours=2),
        robot_serial=robot.serial,
    )
    telemetry_rows(
        robot,
        dataset,
        model,
        [
            {"captured_at": now - timedelta(minutes=i), "brightness": float(rng.normal(0.3, 0.05)), "contrast": 0.2}
            for i in range(80)
        ],
    )

    reports = services.drift_compute(dataset=dataset, now=now)

    fleet = next(r for r in reports if r.robot_id is None)
    assert fleet.drifted
    assert "brightness" in fleet.drifted_features
    assert "telemetry_brightness" in fleet.drifted_features
    brightness = next(f for f in fleet.features if f["feature"] == "brightness")
    assert brightness["psi"] >= 0.2 and brightness["p_value"] < 0.05
    assert fleet.reference_size == 200
    # Features drawn from the same distribution as the reference are not blamed.
    assert not {"contrast", "sharpness", "color_r"} & set(fleet.drifted_features)
    per_robot = next(r for r in reports if r.robot_id == robot.id)
    assert per_robot.drifted and "brightness" in per_robot.drifted_features

    alert = Alert.objects.get(dataset=dataset, kind="drift", scope="fleet")
    assert "brightness" in alert.message and not alert.acknowledged
    assert alert.threshold == pytest.approx(0.2)
    assert Alert.objects.filter(dataset=dataset, kind="drift", scope=f"robot:{robot.serial}").exists()

    # A sample of the drifting images is queued for labeling; the training images are left alone.
    queued = set(Image.objects.filter(labeling_priority__gt=0).values_list("id", flat=True))
    assert 0 < len(queued) <= 20
    assert queued <= {i.id for i in recent}

    # The next hour refreshes the open alert instead of opening another.
    services.drift_compute(dataset=dataset, now=now + timedelta(minutes=5))
    alert.refresh_from_db()
    assert alert.occurrences == 2
    assert Alert.objects.filter(dataset=dataset, kind="drift", scope="fleet").count() == 1


def test_same_distribution_raises_no_alert_and_false_alarms_stay_rare(production):
    dataset, model, reference = production
    rng = np.random.default_rng(2)
    start = timezone.now() - timedelta(days=60)
    alarms = 0
    for i in range(20):
        # Each resample lives in its own window (two days apart; the window is 24 h).
        now = start + timedelta(days=2 * i)
        image_rows(dataset, _image_stats(rng, 60, 0.65), uploaded_at=now - timedelta(hours=1))
        (report,) = services.drift_compute(dataset=dataset, now=now)
        assert report.current_size == 60
        alarms += report.drifted
    assert alarms <= 2, f"{alarms} false alarms in 20 resamples"
    assert DriftReport.objects.filter(dataset=dataset).count() == 20


def test_no_alert_on_a_first_sample_from_the_same_distribution(production):
    dataset, model, reference = production
    image_rows(dataset, _image_stats(np.random.default_rng(3), 80, 0.65), uploaded_at=timezone.now())
    (report,) = services.drift_compute(dataset=dataset)
    assert not report.drifted
    assert not Alert.objects.exists()
    assert not Image.objects.filter(labeling_priority__gt=0).exists()


def test_too_few_recent_images_or_no_production_model_computes_nothing(production):
    dataset, model, reference = production
    image_rows(dataset, _image_stats(np.random.default_rng(4), 5, 0.2), uploaded_at=timezone.now())
    assert services.drift_compute(dataset=dataset) == []
    other = dataset_row("other")
    assert services.drift_compute(dataset=other) == []
    assert not DriftReport.objects.exists()


def test_psi_is_zero_for_identical_samples_and_large_for_a_shift():
    rng = np.random.default_rng(5)
    ref = rng.normal(0.6, 0.05, 500)
    assert statistics.psi(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert statistics.psi(ref, rng.normal(0.3, 0.05, 500)) > 1.0


def test_hourly_task_covers_datasets_with_a_production_deployment(production):
    dataset, model, reference = production
    image_rows(dataset, _image_stats(np.random.default_rng(6), 40, 0.3), uploaded_at=timezone.now())
    dataset_row("no-production")
    drift_compute_task.apply()
    assert DriftReport.objects.filter(dataset=dataset, drifted=True).exists()
    assert DriftReport.objects.filter(dataset__slug="no-production").count() == 0
