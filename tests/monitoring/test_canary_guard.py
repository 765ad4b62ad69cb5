"""The canary guard ends a canary that does worse than production in the field and leaves a fine one alone."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.deployments.models import Deployment
from apps.monitoring import services
from apps.monitoring.models import Alert, CanaryPolicy
from apps.monitoring.tasks import canary_guard_task
from tests.builders import dataset_row, deployment_row, image_rows, model_row, robot_row, telemetry_rows

pytestmark = pytest.mark.django_db


def _frames(rng, since, n, *, detection_rate, confidence):
    frames = []
    for i in range(n):
        detected = rng.random() < detection_rate
        frames.append(
            {
                "captured_at": since + timedelta(seconds=5 + i),
                "latency_ms": 40.0,
                "detections": [{"confidence": min(1.0, rng.gauss(confidence, 0.05)), "box": [1, 2, 30, 20]}]
                if detected
                else [],
            }
        )
    return frames


@pytest.fixture
def canary_setup():
    dataset = dataset_row()
    v1, v2 = model_row(dataset, 1), model_row(dataset, 2)
    now = timezone.now()
    deployment_row(dataset, v1, "production", at=now - timedelta(hours=3))
    canary = deployment_row(dataset, v2, "canary", percent=20, at=now - timedelta(hours=1))
    prod_robot, canary_robot = robot_row("00e2prod", running=v1), robot_row("00e2cana", running=v2)
    # Frames from before the canary started must not count for production.
    telemetry_rows(
        prod_robot,
        dataset,
        v1,
        _frames(random.Random(0), now - timedelta(hours=2), 300, detection_rate=0.1, confidence=0.3),
    )
    return dataset, (v1, v2), canary, (prod_robot, canary_robot), now


def _send(dataset, models, robots, since, *, canary_rate, canary_conf, n=600):
    rng = random.Random(1)
    telemetry_rows(robots[0], dataset, models[0], _frames(rng, since, n, detection_rate=0.8, confidence=0.8))
    telemetry_rows(
        robots[1], dataset, models[1], _frames(rng, since, n, detection_rate=canary_rate, confidence=canary_conf)
    )


def test_a_worse_canary_is_ended_with_the_reason_in_the_history_and_an_alert(canary_setup):
    dataset, models, canary, robots, now = canary_setup
    _send(dataset, models, robots, canary.created_at, canary_rate=0.5, canary_conf=0.8)

    result = services.canary_guard_check(dataset=dataset, now=now)

    assert result["status"] == "ended"
    assert result["production"]["frames"] == 600  # only frames since the canary started
    assert not Deployment.objects.filter(dataset=dataset, channel="canary", is_live=True).exists()
    ended = Deployment.objects.filter(dataset=dataset, channel="canary").order_by("-id").first()
    assert ended.action == Deployment.Action.END and ended.model_id == models[1].id
    assert "Canary guard" in ended.reason and "detection rate" in ended.reason
    # Production is untouched.
    assert Deployment.objects.get(dataset=dataset, channel="production", is_live=True).model_id == models[0].id
    alert = Alert.objects.get(dataset=dataset, kind="canary")
    assert alert.scope == f"model:{models[1].id}" and "detection rate" in alert.details["reason"]
    assert alert.message.startswith(f"The canary model v{models[1].number} was stopped: it does worse than production")
    assert "finds objects in" in alert.message
    # The next minute finds nothing to judge.
    assert services.canary_guard_check(dataset=dataset, now=now)["status"] == "no_canary"


def test_a_fine_canary_is_left_alone(canary_setup):
    dataset, models, canary, robots, now = canary_setup
    _send(dataset, models, robots, canary.created_at, canary_rate=0.78, canary_conf=0.79)

    result = services.canary_guard_check(dataset=dataset, now=now)

    assert result["status"] == "healthy"
    assert Deployment.objects.filter(pk=canary.pk, is_live=True).exists()
    assert not Alert.objects.exists()


def test_a_canary_with_too_few_frames_is_not_judged(canary_setup):
    dataset, models, canary, robots, now = canary_setup
    _send(dataset, models, robots, canary.created_at, canary_rate=0.1, canary_conf=0.3, n=100)
    assert services.canary_guard_check(dataset=dataset, now=now)["status"] == "waiting"
    assert Deployment.objects.filter(pk=canary.pk, is_live=True).exists()


def test_more_feedback_per_frame_also_ends_the_canary(canary_setup):
    dataset, models, canary, robots, now = canary_setup
    _send(dataset, models, robots, canary.created_at, canary_rate=0.8, canary_conf=0.8)
    # 30 feedback uploads blaming the canary model: 0.05 per frame against production's 0.
    image_rows(
        dataset,
        [{"meta": {"reason": "missed", "model_id": models[1].id}} for _ in range(30)],
        source="feedback",
        robot_serial=robots[1].serial,
    )
    result = services.canary_guard_check(dataset=dataset, now=timezone.now())
    assert result["status"] == "ended"
    assert "feedback per frame" in result["reason"]
    assert result["canary"]["feedback"] == 30 and result["production"]["feedback"] == 0


def test_a_disabled_policy_or_a_loose_threshold_keeps_the_canary(canary_setup):
    dataset, models, canary, robots, now = canary_setup
    _send(dataset, models, robots, canary.created_at, canary_rate=0.5, canary_conf=0.8)
    policy = CanaryPolicy.objects.create(dataset=dataset, enabled=False)
    assert services.canary_guard_check(dataset=dataset, now=now)["status"] == "disabled"
    policy.enabled, policy.max_detection_rate_drop = True, 0.5
    policy.save()
    assert services.canary_guard_check(dataset=dataset, now=now)["status"] == "healthy"
    assert Deployment.objects.filter(pk=canary.pk, is_live=True).exists()


def test_the_minute_task_guards_every_live_canary(canary_setup):
    dataset, models, canary, robots, now = canary_setup
    _send(dataset, models, robots, canary.created_at, canary_rate=0.4, canary_conf=0.8)
    canary_guard_task.apply()
    assert not Deployment.objects.filter(pk=canary.pk, is_live=True).exists()
