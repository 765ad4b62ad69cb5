"""Promotion, rollback, canaries, history at time T, robots, enrolment, telemetry (services)."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone

from apps.datasets.boxes import MAX_DETECTIONS
from apps.deployments import selectors, services
from apps.deployments.models import Deployment, GateDecision, Robot, TelemetryRecord
from tests.builders import dataset_row, make_model
from vectormlops.errors import Conflict, Forbidden, PayloadTooLarge, ValidationFailed

pytestmark = pytest.mark.django_db


def live(dataset, channel="production"):
    return Deployment.objects.filter(dataset=dataset, channel=channel, is_live=True)


def test_promote_appends_history_and_keeps_one_live_production(dataset, ml_engineer):
    v1, v2 = make_model(dataset, 1), make_model(dataset, 2)
    first = services.model_promote(model=v1, channel="production", user=ml_engineer, reason="first model").deployment
    second = services.model_promote(model=v2, channel="production", user=ml_engineer, reason="better").deployment
    first.refresh_from_db()
    assert not first.is_live and first.ended_at is not None
    assert second.previous_id == first.pk and second.created_by == ml_engineer
    assert list(live(dataset).values_list("model_id", flat=True)) == [v2.pk]


def test_promoting_the_model_already_live_changes_nothing(dataset):
    v1 = make_model(dataset, 1)
    first = services.model_promote(model=v1, channel="production", reason="first")
    again = services.model_promote(model=v1, channel="production", reason="again")
    assert first.changed and not again.changed
    assert again.deployment.pk == first.deployment.pk
    assert Deployment.objects.filter(dataset=dataset).count() == 1


def test_a_reason_is_required(dataset):
    with pytest.raises(ValidationFailed):
        services.model_promote(model=make_model(dataset, 1), channel="production", reason="  ")


def test_the_gate_verdict_is_stored_beside_a_persons_override(dataset, ml_engineer):
    v1 = make_model(dataset, 1)
    refused = GateDecision.objects.create(candidate=v1, passed=False, reasons=["mAP50 below the floor"])
    deployment = services.model_promote(
        model=v1, channel="production", user=ml_engineer, reason="I know better"
    ).deployment
    assert deployment.gate_decision == refused and deployment.gate_passed is False
    assert deployment.reason == "I know better"


def test_rollback_walks_the_history_v3_v2_v1(dataset):
    v1, v2, v3 = (make_model(dataset, n) for n in (1, 2, 3))
    for model in (v1, v2, v3):
        services.model_promote(model=model, channel="production", reason=f"v{model.number}")
    back1 = services.deployment_rollback(dataset=dataset, reason="v3 misses dark rooms")
    assert back1.model == v2 and back1.action == "rollback"
    back2 = services.deployment_rollback(dataset=dataset, reason="v2 too")
    assert back2.model == v1
    with pytest.raises(Conflict) as excinfo:
        services.deployment_rollback(dataset=dataset, reason="nothing before v1")
    assert excinfo.value.code == "no_previous_deployment"
    assert list(live(dataset).values_list("model_id", flat=True)) == [v1.pk]


def test_rollback_after_a_new_promotion_returns_to_the_restored_model(dataset):
    v1, v2, v3 = (make_model(dataset, n) for n in (1, 2, 3))
    services.model_promote(model=v1, channel="production", reason="v1")
    services.model_promote(model=v2, channel="production", reason="v2")
    services.deployment_rollback(dataset=dataset, reason="v2 bad")  # back on v1
    services.model_promote(model=v3, channel="production", reason="v3")
    assert services.deployment_rollback(dataset=dataset, reason="v3 bad").model == v1  # not v2: it was rolled back
    with pytest.raises(Conflict):
        services.deployment_rollback(dataset=dataset, reason="nothing left")


def test_history_answers_what_was_in_production_at_time_t(dataset):
    v1, v2 = make_model(dataset, 1), make_model(dataset, 2)
    before = timezone.now()
    d1 = services.model_promote(model=v1, channel="production", reason="v1").deployment
    d2 = services.model_promote(model=v2, channel="production", reason="v2").deployment
    Deployment.objects.filter(pk=d1.pk).update(
        created_at=before + timedelta(hours=1), ended_at=before + timedelta(hours=2)
    )
    Deployment.objects.filter(pk=d2.pk).update(created_at=before + timedelta(hours=2))
    assert selectors.deployed_model_at(dataset, "production", before) is None
    assert selectors.deployed_model_at(dataset, "production", before + timedelta(minutes=90)) == v1
    assert selectors.deployed_model_at(dataset, "production", before + timedelta(hours=3)) == v2


def test_canary_needs_a_production_and_ends_by_promotion_or_drop(dataset):
    v1, v2, v3 = (make_model(dataset, n) for n in (1, 2, 3))
    with pytest.raises(ValidationFailed):
        services.model_promote(model=v2, channel="canary", canary_percent=10, reason="no production yet")
    services.model_promote(model=v1, channel="production", reason="v1")
    services.model_promote(model=v2, channel="canary", canary_percent=10, reason="try v2")
    services.canary_end(dataset=dataset, promote=True, reason="v2 is good in the field")
    assert live(dataset).get().model == v2
    assert not live(dataset, "canary").exists()
    services.model_promote(model=v3, channel="canary", canary_percent=20, reason="try v3")
    ended = services.canary_end(dataset=dataset, promote=False, reason="v3 worse")
    assert ended.action == "end" and ended.model == v3
    assert not live(dataset, "canary").exists() and live(dataset).get().model == v2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_promotions_leave_exactly_one_live_production():
    dataset = dataset_row("race")
    models = [make_model(dataset, n) for n in (1, 2, 3, 4)]
    barrier = threading.Barrier(len(models))
    errors = []

    def promote(model):
        try:
            barrier.wait(timeout=10)
            services.model_promote(model=model, channel="production", reason=f"click v{model.number}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=promote, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert live(dataset).count() == 1
    history = list(Deployment.objects.filter(dataset=dataset).order_by("id"))
    assert len(history) == 4
    # The history is a chain: each entry's previous is the one before it, and only the last is live.
    assert [d.previous_id for d in history] == [None] + [d.pk for d in history[:-1]]
    assert [d.is_live for d in history] == [False, False, False, True]


def test_robot_register_stores_only_the_token_hash_and_rejects_a_taken_serial(db):
    robot, token = services.robot_register(serial="00e20115", name="Vector-A1B2")
    assert token not in robot.token_hash and len(robot.token_hash) == 64
    with pytest.raises(Conflict):
        services.robot_register(serial="00e20115")


def test_enrolment_is_off_without_a_key_and_checks_it(db, settings):
    settings.ROBOT_ENROLLMENT_KEY = ""
    with pytest.raises(Forbidden) as off:
        services.robot_enroll(key="anything", serial="00aa", name="")
    assert off.value.code == "enrollment_disabled"
    services.enrollment_key_create(key="admin-set-key-123456789012")
    with pytest.raises(Forbidden) as wrong:
        services.robot_enroll(key="wrong", serial="00aa", name="")
    assert wrong.value.code == "bad_enrollment_key"
    robot, token = services.robot_enroll(key="admin-set-key-123456789012", serial="00aa", name="A")
    assert robot.serial == "00aa" and token


@pytest.mark.usefixtures("one_throttle_window")
def test_enrolment_refuses_an_address_after_too_many_wrong_keys_even_with_the_right_one(db, settings):
    from apps.deployments.robotstate import ENROLL_FAILURES_PER_MIN

    settings.ROBOT_ENROLLMENT_KEY = "the-right-key-of-24-characters"
    address = f"10.9.{time.monotonic_ns() % 250}.{time.monotonic_ns() % 199}"  # a window of its own in shared Redis
    for _ in range(ENROLL_FAILURES_PER_MIN):
        with pytest.raises(Forbidden):
            services.robot_enroll(key="wrong", serial="00ab", address=address)
    with pytest.raises(services.EnrollmentThrottled) as throttled:
        services.robot_enroll(key=settings.ROBOT_ENROLLMENT_KEY, serial="00ab", address=address)
    assert throttled.value.status_code == 429 and 0 < throttled.value.wait_s <= 60
    assert not Robot.objects.filter(serial="00ab").exists()
    robot, _ = services.robot_enroll(key=settings.ROBOT_ENROLLMENT_KEY, serial="00ab", address="10.9.0.1")
    assert robot.serial == "00ab"


def test_telemetry_is_bulk_stored_and_limited_to_500(dataset):
    robot, _ = services.robot_register(serial="00e2")
    model = make_model(dataset, 1)
    record = {
        "captured_at": "2026-11-27T10:00:00Z",
        "latency_ms": 41.5,
        "detections": [{"label": "vector", "confidence": 0.91, "box": [1, 2, 3, 4]}],
        "image_stats": {"brightness": 0.42, "contrast": 0.18},
    }
    assert services.telemetry_ingest(robot_id=robot.pk, dataset=dataset, model_id=model.pk, records=[record] * 3) == 3
    row = TelemetryRecord.objects.first()
    assert row.top_confidence == 0.91 and row.detection_count == 1 and row.brightness == 0.42
    with pytest.raises(PayloadTooLarge):
        services.telemetry_ingest(robot_id=robot.pk, dataset=dataset, model_id=None, records=[record] * 501)
    with pytest.raises(ValidationFailed):
        services.telemetry_ingest(robot_id=robot.pk, dataset=dataset, model_id=None, records=[{"captured_at": "x"}])
    assert TelemetryRecord.objects.count() == 3
    # A time without an offset is taken as UTC.
    naive = {**record, "captured_at": "2026-11-27T11:00:00"}
    assert services.telemetry_ingest(robot_id=robot.pk, dataset=dataset, model_id=None, records=[naive]) == 1
    assert TelemetryRecord.objects.latest("id").captured_at.isoformat() == "2026-11-27T11:00:00+00:00"


def test_telemetry_boxes_are_cleaned_before_they_are_stored(dataset):
    # Given a robot's record whose boxes are partly unusable (a telemetry record carries no frame size)
    robot, _ = services.robot_register(serial="00e3")
    detections = [
        {"label": "vector", "confidence": 0.8, "box": [-5, 10.004, 20, 30]},  # overshoots the frame's left edge
        {"label": "vector", "confidence": 1.7, "box": [1, 2, 3, 4]},  # confidence above 1
        {"label": "cat", "confidence": 0.99, "box": [1, 2, 3, 4]},  # not a class of the dataset
        {"label": "vector", "confidence": float("nan"), "box": [1, 2, 3, 4]},
        {"label": "vector", "confidence": 0.5, "box": [1, 2, float("inf"), 4]},
        {"label": "vector", "confidence": 0.5, "box": [1, 2, 0, 4]},  # no width
        {"label": "vector", "confidence": 0.5, "box": [-30, 2, 20, 4]},  # nothing inside the frame
        {"label": "vector", "confidence": 0.5, "box": [1, 2, 3]},
        {"label": "vector", "confidence": 0.5, "box": ["1", 2, 3, 4]},
        {"label": "vector", "confidence": 0.5, "box": [1e308, 0.0, 1e308, 4]},  # too large to measure
    ] + [{"label": "vector", "confidence": 0.1, "box": [0, 0, 5, 5]}] * 100
    record = {"captured_at": "2026-11-27T10:00:00Z", "detections": detections}
    # When it is ingested
    services.telemetry_ingest(robot_id=robot.pk, dataset=dataset, model_id=None, records=[record])
    # Then only the usable boxes are stored, clipped at the origin, with confidences in [0, 1], at most MAX_DETECTIONS
    row = TelemetryRecord.objects.get()
    assert row.detections[:2] == [
        {"label": "vector", "confidence": 0.8, "box": [0.0, 10.0, 15.0, 30.0]},
        {"label": "vector", "confidence": 1.0, "box": [1.0, 2.0, 3.0, 4.0]},
    ]
    assert len(row.detections) == MAX_DETECTIONS - len(detections[:10]) + 2
    assert row.detection_count == len(row.detections) and row.top_confidence == 1.0
    # A record whose detections are not a list of objects still refuses the batch
    with pytest.raises(ValidationFailed):
        services.telemetry_ingest(
            robot_id=robot.pk, dataset=dataset, model_id=None, records=[{**record, "detections": ["junk"]}]
        )
    assert TelemetryRecord.objects.count() == 1


def test_last_seen_is_cheap_reports_are_written_at_once_refreshes_in_bulk(
    dataset, django_assert_num_queries, monkeypatch
):
    from apps.deployments import robotstate

    robot, token = services.robot_register(serial="00e3")
    model = make_model(dataset, 1)
    principal = robotstate.robot_for_token(token, request=RequestFactory().get("/"))
    with django_assert_num_queries(0):
        robotstate.robot_touch(principal=principal)  # first sight, no model reported: buffered ...
    assert robotstate.robot_seen_flush() == 1  # ... and written with the next flush
    first_seen = Robot.objects.get(pk=robot.pk).last_seen_at
    assert first_seen is not None
    with django_assert_num_queries(0):
        robotstate.robot_touch(principal=principal)
    # A new report (the robot now runs a model) is written at once.
    robotstate.robot_touch(principal=principal, model_id=model.pk, sha256="a" * 64)
    robot = Robot.objects.get(pk=robot.pk)
    assert robot.running_model == model and robot.running_sha256 == "a" * 64 and robot.running_reported_at
    # A minute later the same report only refreshes last-seen: buffered (no query), then written in bulk.
    later = time.time() + 61
    monkeypatch.setattr(robotstate.time, "time", lambda: later)
    with django_assert_num_queries(0):
        robotstate.robot_touch(principal=principal, model_id=model.pk, sha256="a" * 64)
    assert robotstate.robot_seen_flush() == 1
    refreshed = Robot.objects.get(pk=robot.pk)
    assert refreshed.last_seen_at > robot.last_seen_at and refreshed.running_model == model
    assert robotstate.robot_seen_flush() == 0
