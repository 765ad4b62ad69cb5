"""Production performance alerts raised and resolved by telemetry; notifications by e-mail (locmem backend) and to
a real webhook receiver on loopback that checks the signature; a failing webhook retried by a real worker and logged."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.deployments.models import GateDecision
from apps.monitoring import services
from apps.monitoring.models import Alert, Notification, NotificationRule, PerformancePolicy
from apps.training.models import TrainingRun
from tests.builders import dataset_row, deployment_row, model_row, robot_row, telemetry_rows


def _frames(start, count, *, detect_every: int, minutes_apart: float = 1.0):
    """Frames from ``start``; one in ``detect_every`` has no detection."""
    return [
        {
            "captured_at": start + timedelta(minutes=minutes_apart * i),
            "latency_ms": 40.0,
            "detections": [] if i % detect_every == 0 else [{"confidence": 0.8, "box": [0, 0, 9, 9]}],
        }
        for i in range(count)
    ]


def _live_model(slug="perf", days_ago=2):
    dataset = dataset_row(slug)
    model = model_row(dataset, 3)
    deployment_row(dataset, model, at=timezone.now() - timedelta(days=days_ago))
    PerformancePolicy.objects.create(dataset=dataset, window_minutes=60, min_frames=50, baseline_days=1)
    return dataset, model


@pytest.mark.django_db
def test_a_dimmed_robot_opens_a_performance_alert_in_words_and_it_resolves_when_the_light_returns():
    dataset, model = _live_model()
    robot = robot_row("00e2d1a1", running=model)
    now = timezone.now()
    # Given its first day in production: 90 % of frames with a detection.
    telemetry_rows(robot, dataset, model, _frames(now - timedelta(days=2), 300, detect_every=10))
    # When the last hour finds objects in 24 % of frames (the room went dark).
    telemetry_rows(
        robot, dataset, model, _frames(now - timedelta(minutes=59), 100, detect_every=1, minutes_apart=0.5)[:75]
    )
    telemetry_rows(
        robot, dataset, model, _frames(now - timedelta(minutes=20), 25, detect_every=1000, minutes_apart=0.5)
    )

    result = services.performance_check(dataset=dataset, now=now)

    # Then the fleet and the robot each have an open alert that says what happened.
    assert result["scopes"] == {"fleet": "alert", "robot:00e2d1a1": "alert"}
    alert = Alert.objects.get(kind="performance", scope="robot:00e2d1a1")
    assert alert.message.startswith(
        "Robot Vector-d1a1 is doing worse with model v3 than in its first days in production"
    )
    assert "finds objects in 24% of frames vs 90%" in alert.message
    assert alert.details["model_id"] == model.id and alert.is_open

    # A second check refreshes the same alert rather than opening another.
    services.performance_check(dataset=dataset, now=now)
    assert Alert.objects.filter(kind="performance").count() == 2

    # When the light comes back, the next hour looks like the first days again: the alerts resolve by themselves.
    later = now + timedelta(minutes=61)
    telemetry_rows(robot, dataset, model, _frames(now + timedelta(minutes=2), 100, detect_every=10, minutes_apart=0.5))
    result = services.performance_check(dataset=dataset, now=later)
    assert result["scopes"] == {"fleet": "resolved", "robot:00e2d1a1": "resolved"}
    assert not any(a.is_open for a in Alert.objects.filter(kind="performance"))
    assert all(a.resolved_at == later for a in Alert.objects.filter(kind="performance"))


@pytest.mark.django_db
def test_a_model_too_new_for_a_baseline_is_compared_with_the_previous_model():
    dataset = dataset_row("perf2")
    old, new = model_row(dataset, 1), model_row(dataset, 2)
    PerformancePolicy.objects.create(dataset=dataset, window_minutes=60, min_frames=50)
    now = timezone.now()
    deployment_row(dataset, old, at=now - timedelta(days=5)).__class__.objects.filter(model=old).update(is_live=False)
    deployment_row(dataset, new, at=now - timedelta(minutes=30))
    robot = robot_row("00e2d1a2", running=new)
    telemetry_rows(robot, dataset, old, _frames(now - timedelta(days=2), 200, detect_every=10))
    telemetry_rows(robot, dataset, new, _frames(now - timedelta(minutes=29), 60, detect_every=2, minutes_apart=0.4))

    result = services.performance_check(dataset=dataset, now=now)

    assert result["scopes"]["fleet"] == "alert"
    alert = Alert.objects.get(scope="fleet")
    assert "than model v1 did before it" in alert.message


@pytest.mark.django_db
def test_without_enough_frames_nothing_is_judged():
    dataset, model = _live_model("perf3")
    robot = robot_row("00e2d1a3", running=model)
    now = timezone.now()
    telemetry_rows(robot, dataset, model, _frames(now - timedelta(days=2), 300, detect_every=10))
    telemetry_rows(robot, dataset, model, _frames(now - timedelta(minutes=10), 10, detect_every=1))
    assert services.performance_check(dataset=dataset, now=now)["scopes"] == {
        "fleet": "waiting",
        "robot:00e2d1a3": "waiting",
    }
    assert not Alert.objects.exists()


@pytest.mark.django_db
def test_a_first_model_promoted_ten_minutes_ago_is_judged_against_its_own_first_frames():
    # Given a first production model (no earlier one), live for 10 minutes, 90 % of frames with a detection.
    dataset, model = _live_model("perf4", days_ago=10 / 1440)
    robot = robot_row("00e2d1a4", running=model)
    now = timezone.now()
    telemetry_rows(
        robot, dataset, model, _frames(now - timedelta(minutes=10), 100, detect_every=10, minutes_apart=0.05)
    )
    # When the room goes dark for the last 5 minutes: no detection at all.
    telemetry_rows(robot, dataset, model, _frames(now - timedelta(minutes=5), 100, detect_every=1, minutes_apart=0.05))

    result = services.performance_check(dataset=dataset, now=now)

    # Then its first 50 frames are the baseline and the 150 after them are judged: an alert per scope, in words.
    assert result["scopes"] == {"fleet": "alert", "robot:00e2d1a4": "alert"}
    alert = Alert.objects.get(kind="performance", scope="fleet")
    assert alert.message.startswith("The fleet is doing worse with model v3 than in its first 50 frames in production")
    assert "finds objects in 30% of frames vs 90%" in alert.message and "150 frames" in alert.message

    # When the light returns and bright frames dominate what is judged, the alerts resolve by themselves.
    later = now + timedelta(minutes=20)
    telemetry_rows(robot, dataset, model, _frames(now + timedelta(seconds=1), 600, detect_every=10, minutes_apart=0.03))
    result = services.performance_check(dataset=dataset, now=later)
    assert result["scopes"] == {"fleet": "resolved", "robot:00e2d1a4": "resolved"}
    assert not any(a.is_open for a in Alert.objects.filter(kind="performance"))


@pytest.mark.django_db
def test_a_first_model_with_too_few_frames_raises_nothing_and_says_why():
    dataset, model = _live_model("perf5", days_ago=10 / 1440)
    robot = robot_row("00e2d1a5", running=model)
    now = timezone.now()
    telemetry_rows(robot, dataset, model, _frames(now - timedelta(minutes=9), 50, detect_every=1, minutes_apart=0.1))

    result = services.performance_check(dataset=dataset, now=now)

    assert result["status"] == "no_baseline"
    assert result["reason"].startswith("model v3 needs 50 frames in production as its baseline and 50 more to judge")
    assert not Alert.objects.exists()

    # With a baseline but too few frames after it, the fleet waits and says how many it has.
    telemetry_rows(robot, dataset, model, _frames(now - timedelta(minutes=4), 20, detect_every=1, minutes_apart=0.1))
    result = services.performance_check(dataset=dataset, now=now)
    assert result["scopes"]["fleet"] == "waiting" and result["reason"].startswith("20 frames of model v3 to judge")
    assert not Alert.objects.exists()


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_an_alert_reaches_the_mailbox_and_a_signed_webhook(celery_worker_thread, settings, webhook_receiver):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "http://vmo.example"
    url, receiver = webhook_receiver
    dataset = dataset_row("notified")
    robot = robot_row("00e2d1b1")
    NotificationRule.objects.create(dataset=dataset, channel="email", target="ops@example.com", events=["alert"])
    NotificationRule.objects.create(
        dataset=dataset, channel="webhook", target=url, secret="s3cret-key", events=["alert", "promotion"]
    )
    NotificationRule.objects.create(dataset=dataset, channel="email", target="ml@example.com", events=["rollback"])

    alert, _ = services.alert_raise(
        dataset=dataset,
        kind="performance",
        robot=robot,
        message="Robot Vector-d1b1 is doing worse with model v3 than in its first days in production.",
        details={"model_id": 7},
    )

    assert _wait_for(lambda: len(mail.outbox) == 1 and receiver.received)
    message = mail.outbox[0]
    assert message.to == ["ops@example.com"] and "Performance alert on notified" in message.subject
    assert "Robot Vector-d1b1 is doing worse" in message.body
    assert "images: http://vmo.example/datasets/notified/?robot=00e2d1b1" in message.body
    hook = receiver.received[0]
    assert hook["valid"] and hook["body"]["event"] == "alert" and hook["body"]["data"]["alert_id"] == alert.id
    assert hook["body"]["links"]["alert"] == f"http://vmo.example/monitoring/alerts/{alert.id}/"
    assert _wait_for(lambda: Notification.objects.filter(status="delivered").count() == 2)
    # The rollback-only rule heard nothing; a refresh of the same alert sends nothing new.
    services.alert_raise(dataset=dataset, kind="performance", robot=robot, message="again")
    time.sleep(0.5)
    assert Notification.objects.count() == 2 and len(mail.outbox) == 1

    # When the alert resolves by itself, the same rules hear that it did, in words.
    services.alert_resolve(alert=alert)
    assert _wait_for(lambda: len(mail.outbox) == 2 and len(receiver.received) == 2)
    resolved = mail.outbox[1]
    assert resolved.subject == "[VectorMLOps] Resolved: Performance alert on notified"
    assert resolved.body.startswith("Resolved at ") and "the figures are back within the limits" in resolved.body
    assert "said: again" in resolved.body  # the latest message of the refreshed alert
    hook = receiver.received[1]
    assert hook["valid"] and hook["body"]["data"]["resolved"] is True and hook["body"]["data"]["alert_id"] == alert.id
    assert hook["body"]["text"].startswith("Resolved at ")


def test_a_failing_webhook_is_retried_and_logged(celery_worker_thread, settings, webhook_receiver):
    settings.NOTIFICATION_RETRY_DELAY_S = 0.2
    settings.NOTIFICATION_ATTEMPTS = 3
    url, receiver = webhook_receiver
    receiver.answers = [500, 503]  # then 204
    dataset = dataset_row("flaky")
    NotificationRule.objects.create(
        dataset=dataset, channel="webhook", target=url, secret="s3cret-key", events=["alert"]
    )

    services.alert_raise(dataset=dataset, kind="drift", message="The fleet sees darker images.")

    assert _wait_for(lambda: Notification.objects.filter(status="delivered").exists())
    notification = Notification.objects.get()
    assert notification.attempts == 3 and notification.response_status == 204
    assert notification.last_error.startswith("attempt 2: the webhook answered 503")
    assert [r["status"] for r in receiver.received] == [500, 503, 204] and all(r["valid"] for r in receiver.received)


def test_a_webhook_that_never_answers_well_ends_failed(celery_worker_thread, settings, webhook_receiver):
    settings.NOTIFICATION_RETRY_DELAY_S = 0.1
    settings.NOTIFICATION_ATTEMPTS = 2
    url, receiver = webhook_receiver
    receiver.answers = [500, 500, 500]
    dataset = dataset_row("down")
    NotificationRule.objects.create(
        dataset=dataset, channel="webhook", target=url, secret="s3cret-key", events=["alert"]
    )

    services.alert_raise(dataset=dataset, kind="drift", message="The fleet sees darker images.")

    assert _wait_for(lambda: Notification.objects.filter(status="failed").exists())
    notification = Notification.objects.get()
    assert notification.attempts == 2 and "attempt 2: the webhook answered 500" in notification.last_error
    assert len(receiver.received) == 2


@pytest.mark.django_db
def test_promotions_rollbacks_gate_decisions_and_failed_runs_are_notified(settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from vectormlops.celery import app

    app.conf.task_always_eager = True
    try:
        dataset = dataset_row("events")
        events = ["gate", "promotion", "rollback", "run_failed"]
        NotificationRule.objects.create(dataset=dataset, channel="email", target="ml@example.com", events=events)
        with django_capture_on_commit_callbacks(execute=True):
            run = TrainingRun.objects.create(dataset=dataset, base="yolov8n.yaml", status="queued")
            run.status, run.error = "failed", "Traceback ...\nCUDA out of memory"
            run.save()
            run.save()  # saved again: still one notification
        model = model_row(dataset, 4)
        with django_capture_on_commit_callbacks(execute=True):
            deployment_row(dataset, model)
        with django_capture_on_commit_callbacks(execute=True):
            GateDecision.objects.create(candidate=model, passed=False, reasons=["mAP50-95 fell by 0.04."])
        subjects = sorted(m.subject for m in mail.outbox)
        assert subjects == sorted(
            [
                "[VectorMLOps] events: model v4 is live in production",
                "[VectorMLOps] Model v4 of events failed the promotion gate",
                f"[VectorMLOps] Training run #{run.id} of events failed",
            ]
        )
        assert "CUDA out of memory" in next(m.body for m in mail.outbox if "Training run" in m.subject)
    finally:
        app.conf.task_always_eager = False
