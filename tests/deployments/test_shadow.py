"""The shadow channel (issue 19): history, the poll answer's ``shadow``, artifacts, telemetry's shadow part and
skipped frames, hourly shadow buckets and pruning, the field comparison on labelled disagreement frames, the gate."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.datasets.boxes import MAX_DETECTIONS, detections_clean
from apps.datasets.models import Image
from apps.deployments import hooks, selectors, services, shadow
from apps.deployments.models import Deployment, GateDecision, ShadowSkip, TelemetryRecord
from apps.deployments.robotstate import in_canary
from apps.deployments.selectors import shadow_gates_due
from apps.deployments.services.shadow import shadow_end, shadow_start
from apps.deployments.tasks import shadow_gate_task
from apps.monitoring import services as monitoring
from apps.monitoring.models import ShadowHourly
from tests.builders import make_image, make_model, make_robot, stored_image_row
from vectormlops.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db

POLL = "/api/v1/robot/model"
BOX = [10.0, 10.0, 20.0, 20.0]


@pytest.fixture
def models(dataset):
    v1, v2 = make_model(dataset, 1), make_model(dataset, 2)
    services.model_promote(model=v1, channel="production", reason="first")
    return v1, v2


def _aggregate():
    return monitoring.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))


# --- the channel -------------------------------------------------------------------------------------------------


def test_starting_and_ending_a_shadow_are_recorded_in_the_history(dataset, models, ml_engineer):
    v1, v2 = models
    with pytest.raises(ValidationFailed) as refused:
        shadow_start(model=v2, shadow_percent=0, reason="x")
    assert refused.value.code == "bad_shadow_percent"
    with pytest.raises(ValidationFailed) as refused:
        shadow_start(model=v1, shadow_percent=50, reason="the production model itself")
    assert refused.value.code == "no_production"
    started = shadow_start(model=v2, shadow_percent=50, user=ml_engineer, reason="see it in the field").deployment
    assert (started.channel, started.action, started.shadow_percent, started.is_live) == ("shadow", "promote", 50, True)
    again = shadow_start(model=v2, shadow_percent=50, reason="again")
    assert not again.changed and again.deployment.pk == started.pk  # nothing changes
    assert selectors.lifecycle_status(v2) == "shadow"
    ended = shadow_end(dataset=dataset, user=ml_engineer, reason="seen enough")
    assert (ended.channel, ended.action, ended.model_id, ended.is_live) == ("shadow", "end", v2.pk, False)
    assert ended.created_by == ml_engineer and ended.previous_id == started.pk
    started.refresh_from_db()
    assert not started.is_live and started.ended_at is not None
    assert selectors.lifecycle_status(v2) == "candidate"  # a shadow never drove a robot: not retired
    with pytest.raises(Conflict) as none_live:
        shadow_end(dataset=dataset, reason="again")
    assert none_live.value.code == "no_shadow"


def test_promoting_the_shadow_model_to_production_ends_its_shadow(dataset, models):
    _, v2 = models
    shadow_start(model=v2, shadow_percent=100, reason="try")
    services.model_promote(model=v2, channel="production", reason="it did well")
    ends = Deployment.objects.filter(dataset=dataset, channel="shadow", action="end")
    assert ends.count() == 1 and not Deployment.objects.filter(channel="shadow", is_live=True).exists()


# --- the poll answer ---------------------------------------------------------------------------------------------


def test_robots_in_the_shadow_share_get_the_shadow_model_beside_theirs(robot_client, dataset, models):
    v1, v2 = models
    serials = [f"00e2{n:04x}" for n in range(12)]
    clients = {s: robot_client(make_robot(serial=s)[1]) for s in serials}
    etags = {s: c.get(POLL, {"dataset": "vector"})["ETag"] for s, c in clients.items()}
    deployment = shadow_start(model=v2, shadow_percent=50, reason="half the fleet").deployment
    expected = {s for s in serials if in_canary(s, deployment.pk, 50)}
    assert 0 < len(expected) < len(serials)
    onnx = v2.artifacts.get(format="onnx")
    for serial, client in clients.items():
        response = client.get(POLL, {"dataset": "vector"}, HTTP_IF_NONE_MATCH=etags[serial])
        if serial not in expected:
            assert response.status_code == 304  # nothing changed for robots outside the share
            continue
        body = response.json()
        assert body["model_id"] == v1.pk and body["channel"] == "production"
        assert body["shadow"]["model_id"] == v2.pk and body["shadow"]["version"] == 2
        assert body["shadow"]["sha256"] == onnx.sha256 and body["shadow"]["classes"] == ["vector"]
        assert body["shadow"]["artifacts"]["onnx"] == {
            "url": f"/api/v1/models/{v2.pk}/artifacts/onnx",
            "sha256": onnx.sha256,
            "size": onnx.size,
        }
        assert {"imgsz", "conf_threshold"} <= set(body["shadow"])
        download = client.get(body["shadow"]["artifacts"]["onnx"]["url"])
        assert download.status_code == 200 and download["X-Checksum-Sha256"] == onnx.sha256
        etags[serial] = response["ETag"]
    shadow_end(dataset=dataset, reason="done")
    member = next(iter(expected))
    after = clients[member].get(POLL, {"dataset": "vector"}, HTTP_IF_NONE_MATCH=etags[member])
    assert after.status_code == 200 and "shadow" not in after.json()


def test_a_robot_already_running_the_shadow_model_gets_no_shadow(robot_client, dataset, models):
    _, v2 = models
    robot, token = make_robot(serial="00e20999")
    services.robot_pin(robot=robot, model=v2)
    shadow_start(model=v2, shadow_percent=100, reason="all")
    body = robot_client(token).get(POLL, {"dataset": "vector"}).json()
    assert body["model_id"] == v2.pk and "shadow" not in body


def test_shadow_changes_are_seen_by_the_api_promote_endpoint(api_as, ml_engineer, dataset, models):
    _, v2 = models
    client = api_as(ml_engineer)
    refused = client.post(f"/api/v1/models/{v2.pk}/promote", {"channel": "shadow", "reason": "x"}, format="json")
    assert refused.status_code == 201 and refused.json()["shadow_percent"] == 100  # the default share: all
    again = client.post(
        f"/api/v1/models/{v2.pk}/promote", {"channel": "shadow", "shadow_percent": 100, "reason": "x"}, format="json"
    )
    assert again.status_code == 200
    bad = client.post(
        f"/api/v1/models/{v2.pk}/promote", {"channel": "shadow", "shadow_percent": 101, "reason": "x"}, format="json"
    )
    assert bad.status_code == 400
    history = client.get("/api/v1/datasets/vector/deployments").json()["results"]
    assert history[0]["channel"] == "shadow" and history[0]["shadow_percent"] == 100


# --- telemetry ---------------------------------------------------------------------------------------------------


def _record(at, *, live, shadow_part=None, latency=40.0, brightness=0.5):
    record = {
        "captured_at": at.isoformat(),
        "latency_ms": latency,
        "detections": live,
        "image_stats": {"brightness": brightness, "contrast": 0.2},
    }
    if shadow_part is not None:
        record["shadow"] = shadow_part
    return record


def test_telemetry_stores_the_shadow_part_and_skipped_frames_and_aggregates_them(robot_client, dataset, models):
    v1, v2 = models
    robot, token = make_robot()
    client = robot_client(token)
    now = timezone.now()
    # A little earlier, in the same hour as now: skipped frames are counted in the hour they are reported.
    at = max(now - timedelta(minutes=5), now.replace(minute=0, second=0, microsecond=0))
    box = {"label": "vector", "confidence": 0.9, "box": BOX}
    moved = {"label": "vector", "confidence": 0.6, "box": [60.0, 60.0, 20.0, 20.0]}
    records = [
        _record(at, live=[box], shadow_part={"model_id": v2.pk, "latency_ms": 55.0, "detections": [box]}),
        _record(at, live=[box], shadow_part={"model_id": v2.pk, "latency_ms": 65.0, "detections": [moved]}),
        _record(at, live=[], shadow_part={"model_id": v2.pk, "latency_ms": 60.0, "detections": []}, brightness=0.1),
        _record(at, live=[box]),  # no shadow on this frame
    ]
    response = client.post(
        "/api/v1/telemetry",
        {
            "dataset": "vector",
            "model_id": v1.pk,
            "records": records,
            "shadow_skipped": [{"model_id": v2.pk, "frames": 7}],
        },
        format="json",
    )
    assert response.status_code == 202 and response.json()["accepted"] == 4
    stored = list(TelemetryRecord.objects.order_by("id"))
    assert [r.shadow_model_id for r in stored] == [v2.pk, v2.pk, v2.pk, None]
    assert [r.shadow_matched for r in stored] == [1, 0, 0, None]
    assert stored[1].shadow_detections == [moved] and stored[1].shadow_latency_ms == 65.0
    assert ShadowSkip.objects.get().frames == 7

    _aggregate()
    numbers = shadow.comparison(v2.pk, live_model_id=v1.pk)
    overall = numbers["overall"]
    assert overall["frames"] == 3 and overall["skipped"] == 7
    assert overall["agreement"] == pytest.approx(2 / 3)  # the matching frame and the empty one agree
    assert overall["live"]["detection_rate"] == pytest.approx(2 / 3)
    assert overall["shadow"]["detection_rate"] == pytest.approx(2 / 3)
    assert overall["live"]["latency_ms"] == pytest.approx(40.0)
    assert overall["shadow"]["latency_ms"] == pytest.approx(60.0)
    assert [r["frames"] for r in numbers["per_robot"]] == [3]
    assert {s["slice"]: s["frames"] for s in numbers["per_slice"]} == {"lighting:dark": 1, "lighting:normal": 2}
    assert len(numbers["series"]) == 1
    # Aggregating again adds nothing (each raw row counts once).
    _aggregate()
    assert shadow.comparison(v2.pk)["overall"]["frames"] == 3
    # Raw rows go with the same retention; the buckets stay.
    deleted = monitoring.telemetry_prune(older_than=timezone.now() + timedelta(seconds=1) - timedelta(seconds=1))
    assert deleted >= 1
    assert not ShadowSkip.objects.exists() and ShadowHourly.objects.exists()
    # The numbers are monitoring's answer to deployments' question: without an answer installed, no evidence.
    previous = hooks.install_shadow_field_sums(None)
    try:
        unanswered = shadow.comparison(v2.pk)
    finally:
        hooks.install_shadow_field_sums(previous)
    assert unanswered["overall"]["frames"] == 0 and unanswered["per_robot"] == unanswered["series"] == []


@pytest.mark.parametrize(
    "part, code",
    [
        ("not an object", "bad_telemetry"),
        ({"model_id": "2", "detections": []}, "bad_telemetry"),
        ({"model_id": 1, "latency_ms": -1, "detections": []}, "bad_telemetry"),
        ({"model_id": 1, "detections": "many"}, "bad_telemetry"),
        ({"model_id": 987654, "detections": []}, "unknown_model"),
    ],
)
def test_a_malformed_shadow_part_refuses_the_batch_and_stores_nothing(robot_client, dataset, models, part, code):
    v1, _ = models
    _, token = make_robot()
    records = [_record(timezone.now(), live=[]), _record(timezone.now(), live=[], shadow_part=part)]
    response = robot_client(token).post(
        "/api/v1/telemetry", {"dataset": "vector", "model_id": v1.pk, "records": records}, format="json"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert not TelemetryRecord.objects.exists()


def test_bad_shadow_skipped_is_refused(robot_client, dataset, models):
    v1, _ = models
    _, token = make_robot()
    for skipped in ([{"model_id": v1.pk, "frames": -1}], "seven", [{"model_id": 987654, "frames": 1}]):
        response = robot_client(token).post(
            "/api/v1/telemetry",
            {
                "dataset": "vector",
                "model_id": v1.pk,
                "records": [_record(timezone.now(), live=[])],
                "shadow_skipped": skipped,
            },
            format="json",
        )
        assert response.status_code == 400, skipped
    assert not TelemetryRecord.objects.exists() and not ShadowSkip.objects.exists()


def test_shadow_boxes_are_cleaned_and_bounded():
    dirty = [
        {"label": "vector", "confidence": 1.7, "box": [1, 2, 3, 4]},
        {"label": "cat", "confidence": 0.5, "box": [1, 2, 3, 4]},
        {"label": "vector", "confidence": float("nan"), "box": [1, 2, 3, 4]},
        {"label": "vector", "confidence": 0.5, "box": [1, 2, 0, 4]},
        {"label": "vector", "confidence": 0.5, "box": [1, 2, 3]},
        "junk",
    ] + [{"label": "vector", "confidence": 0.1, "box": [0, 0, 1, 1]}] * 1000
    clean = detections_clean(dirty, classes=["vector"])
    assert clean[0] == {"label": "vector", "confidence": 1.0, "box": [1, 2, 3, 4]}
    assert len(clean) == MAX_DETECTIONS - 6 + 1
    # Matching stays within numbers: boxes too large to measure match nothing, without an error.
    huge = [{"label": "vector", "confidence": 0.5, "box": [0.0, 0.0, 1e308, 1e308]}]
    assert shadow.matched_pairs(huge, huge) == []
    near = [{"label": "vector", "box": [11.0, 11.0, 20.0, 20.0]}, {"label": "cube", "box": BOX}]
    assert shadow.matched_pairs([{"label": "vector", "box": BOX}], near) == [(0, 0)]


# --- field comparison and the gate -------------------------------------------------------------------------------


def _disagreement_frame(dataset, live_model, shadow_model, *, live, shadow_boxes, truth=None, seed=0):
    meta = {
        "model_id": live_model.pk,
        "predictions": live,
        "shadow": {"model_id": shadow_model.pk, "predictions": shadow_boxes},
        "disagreement": 0.9,
    }
    if truth is None:
        return make_image(dataset, seed=seed, source=Image.Source.SHADOW_DISAGREEMENT, meta=meta)
    boxes = [{"class_id": 0, "box": b} for b in truth]
    return make_image(
        dataset, seed=seed, source=Image.Source.SHADOW_DISAGREEMENT, meta=meta, boxes=boxes, status="approved"
    )


def _frames(client, v1, v2, *, n, agree=True, shadow_latency=50.0):
    box = {"label": "vector", "confidence": 0.9, "box": BOX}
    other = {"label": "vector", "confidence": 0.9, "box": [60.0, 60.0, 20.0, 20.0]}
    at = timezone.now() - timedelta(minutes=1)
    records = [
        _record(
            at,
            live=[box],
            shadow_part={"model_id": v2.pk, "latency_ms": shadow_latency, "detections": [box if agree else other]},
        )
        for _ in range(n)
    ]
    response = client.post(
        "/api/v1/telemetry", {"dataset": "vector", "model_id": v1.pk, "records": records}, format="json"
    )
    assert response.status_code == 202
    _aggregate()


def test_field_precision_and_recall_of_both_models_on_labelled_disagreement_frames(dataset, models):
    v1, v2 = models
    truth_box = [10.0, 10.0, 20.0, 20.0]
    hit = {"label": "vector", "confidence": 0.8, "box": truth_box}
    miss = {"label": "vector", "confidence": 0.8, "box": [50.0, 40.0, 10.0, 10.0]}
    _disagreement_frame(dataset, v1, v2, live=[miss], shadow_boxes=[hit], truth=[truth_box], seed=1)
    _disagreement_frame(dataset, v1, v2, live=[], shadow_boxes=[hit], truth=[truth_box], seed=2)
    _disagreement_frame(dataset, v1, v2, live=[hit], shadow_boxes=[], seed=3)  # not labelled yet: not counted
    scores = shadow.field_scores(dataset, v2.pk)
    assert scores["labelled"] == 2
    assert scores["shadow"]["precision"] == 1.0 and scores["shadow"]["recall"] == 1.0
    assert scores["live"]["precision"] == 0.0 and scores["live"]["recall"] == 0.0
    gallery = shadow.gallery(dataset, v2.pk)
    assert len(gallery) == 3 and {len(frame["truth"]) for frame in gallery} == {0, 1}


def test_the_gate_lists_shadow_evidence_and_applies_the_policy(robot_client, dataset, models):
    v1, v2 = models
    policy = services.policy_for(dataset)
    passed, reasons, evidence = shadow.shadow_check(model=v2, live_model=v1, policy=policy)
    assert passed and reasons == [] and evidence["numbers"]["frames"] == 0  # not required, nothing seen
    policy.shadow_min_frames = 5
    policy.shadow_min_agreement = 0.8
    policy.save()
    passed, reasons, _ = shadow.shadow_check(model=v2, live_model=v1, policy=policy)
    assert not passed and "0 frame(s)" in reasons[0]
    _, token = make_robot()
    client = robot_client(token)
    _frames(client, v1, v2, n=6, agree=True)
    passed, reasons, evidence = shadow.shadow_check(model=v2, live_model=v1, policy=policy)
    assert passed, reasons
    assert evidence["numbers"]["frames"] == 6 and evidence["numbers"]["agreement"] == 1.0
    _frames(client, v1, v2, n=6, agree=False)  # now they agree on half the frames
    passed, reasons, _ = shadow.shadow_check(model=v2, live_model=v1, policy=policy)
    assert not passed and any("agree on 50.0%" in r for r in reasons)
    policy.shadow_min_agreement = 0.0
    policy.shadow_max_latency_increase = 0.1  # 50 ms against 40 ms is +25 %
    policy.save()
    passed, reasons, _ = shadow.shadow_check(model=v2, live_model=v1, policy=policy)
    assert not passed and any("latency" in r for r in reasons)


def test_the_gate_verdict_carries_shadow_evidence_and_auto_promotes_on_it(robot_client, dataset, tiny_weights):
    for i in range(4):
        stored_image_row(dataset, seed=2000 + i)
    policy = services.policy_for(dataset)
    policy.min_map50, policy.min_test_images, policy.max_slice_drop, policy.min_slice_images = 0.0, 1, 1.0, 10_000
    policy.auto_promote, policy.shadow_min_frames = True, 5
    policy.save()
    production = make_model(dataset, 1, pt=tiny_weights)
    services.model_promote(model=production, channel="production", reason="first")
    candidate = make_model(dataset, 2, pt=tiny_weights)

    # Offline it is as good (same weights), but the policy wants shadow frames first: refused, not promoted.
    decision = services.model_evaluate_and_gate(model=candidate)
    assert not decision.passed and decision.shadow["required"] and decision.shadow["numbers"]["frames"] == 0
    assert any("Shadow: 0 frame(s)" in reason for reason in decision.reasons)
    assert Deployment.objects.get(dataset=dataset, channel="production", is_live=True).model_id == production.pk
    assert shadow_gates_due() == []

    # In shadow, the robots' frames arrive; the hourly re-gate passes it and auto-promotes it.
    shadow_start(model=candidate, shadow_percent=100, reason="prove it in the field")
    _, token = make_robot()
    _frames(robot_client(token), production, candidate, n=6, agree=True)
    assert shadow_gates_due() == [candidate]
    assert shadow_gate_task.apply().result == {"gated": {candidate.pk: True}}
    latest = GateDecision.objects.filter(candidate=candidate).latest("created_at")
    assert latest.passed and latest.shadow["numbers"]["frames"] == 6
    assert any("agree on 100.0%" in reason for reason in latest.reasons)
    assert Deployment.objects.get(dataset=dataset, channel="production", is_live=True).model_id == candidate.pk
    assert not Deployment.objects.filter(dataset=dataset, channel="shadow", is_live=True).exists()
    assert shadow_gates_due() == []


def test_disagreement_frames_come_first_in_the_labeling_queue_and_count_as_robot_frames(dataset, models, annotator):
    from apps.labeling.services.claims import image_claim_next
    from apps.monitoring.selectors import ROBOT_SOURCES

    v1, v2 = models
    make_image(dataset, seed=1, source=Image.Source.CAMERA)  # uploaded first
    meta = {"model_id": v1.pk, "predictions": [], "shadow": {"model_id": v2.pk, "predictions": []}}
    frame = make_image(dataset, seed=2, source=Image.Source.SHADOW_DISAGREEMENT, meta=meta)
    assert image_claim_next(dataset=dataset, user=annotator) == frame
    assert Image.Source.SHADOW_DISAGREEMENT in ROBOT_SOURCES
