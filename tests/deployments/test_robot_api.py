"""The robot-facing API exactly as shared/API.md says: poll, canary split, pins, ETag/304, artifacts, telemetry."""

import hashlib

import pytest

from apps.deployments import services
from apps.deployments.models import EnrollmentKey, Robot
from apps.deployments.robotstate import in_canary
from tests.builders import dataset_row, make_model, make_robot

pytestmark = pytest.mark.django_db

POLL = "/api/v1/robot/model"


@pytest.fixture
def live_v1(dataset):
    v1 = make_model(dataset, 1)
    services.model_promote(model=v1, channel="production", reason="first")
    return v1


def test_poll_answers_the_production_model_with_a_quoted_etag(robot_client, live_v1, settings):
    settings.ROBOT_POLL_AFTER_S = 45
    _, token = make_robot()
    response = robot_client(token).get(POLL, {"dataset": "vector"})
    assert response.status_code == 200
    body = response.json()
    onnx = live_v1.artifacts.get(format="onnx")
    assert body["dataset"] == "vector" and body["model_id"] == live_v1.pk and body["version"] == 1
    assert body["channel"] == "production" and body["sha256"] == onnx.sha256
    assert body["classes"] == ["vector"] and body["imgsz"] == 64 and body["conf_threshold"] == 0.25
    assert body["artifacts"]["onnx"] == {
        "url": f"/api/v1/models/{live_v1.pk}/artifacts/onnx",
        "sha256": onnx.sha256,
        "size": onnx.size,
    }
    assert set(body["artifacts"]) == {"onnx", "pt"}
    assert body["deployed_at"].endswith("Z") and body["poll_after_s"] == 45
    etag = response["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    # The dataset may be omitted while only one exists.
    assert robot_client(token).get(POLL).json()["model_id"] == live_v1.pk


def test_a_matching_if_none_match_is_a_304_without_any_database_query(robot_client, live_v1, django_assert_num_queries):
    _, token = make_robot()
    client = robot_client(token)
    etag = client.get(POLL, {"dataset": "vector"})["ETag"]
    with django_assert_num_queries(0):
        response = client.get(POLL, {"dataset": "vector"}, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304 and response.content == b"" and response["ETag"] == etag
    # The ETag changes when the answer changes (promotion invalidates the cached state).
    services.model_promote(model=make_model(live_v1.dataset, 2), channel="production", reason="v2")
    changed = client.get(POLL, {"dataset": "vector"}, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag and changed.json()["version"] == 2
    # A rollback is seen at once too.
    services.deployment_rollback(dataset=live_v1.dataset, reason="v2 bad")
    assert client.get(POLL, {"dataset": "vector"}).json()["version"] == 1


def test_no_deployment_is_a_404_with_its_code(robot_client, dataset):
    _, token = make_robot()
    response = robot_client(token).get(POLL, {"dataset": "vector"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_deployment"
    assert robot_client(token).get(POLL, {"dataset": "nope"}).status_code == 404


def test_canary_membership_is_stable_and_close_to_the_percent_over_1000_serials():
    serials = [f"{i:08x}" for i in range(1000)]
    members = [s for s in serials if in_canary(s, canary_deployment_id=42, percent=10)]
    assert 70 <= len(members) <= 130
    assert members == [s for s in serials if in_canary(s, canary_deployment_id=42, percent=10)]
    # A new canary deployment draws a different (but again stable) group.
    other = [s for s in serials if in_canary(s, canary_deployment_id=43, percent=10)]
    assert other != members
    assert all(in_canary(s, 42, 100) for s in serials) and not any(in_canary(s, 42, 0) for s in serials)


def test_robots_in_the_canary_get_the_canary_model(robot_client, live_v1, dataset):
    v2 = make_model(dataset, 2)
    canary = services.model_promote(model=v2, channel="canary", canary_percent=30, reason="try v2").deployment
    seen = {"canary": 0, "production": 0}
    for i in range(60):
        serial = f"c{i:04d}"
        _, token = make_robot(serial)
        body = robot_client(token).get(POLL, {"dataset": "vector"}).json()
        expected = "canary" if in_canary(serial, canary.pk, 30) else "production"
        assert body["channel"] == expected
        assert body["model_id"] == (v2.pk if expected == "canary" else live_v1.pk)
        seen[expected] += 1
    assert seen["canary"] > 0 and seen["production"] > 0


def test_a_pin_overrides_channels_and_unpinning_restores_them(robot_client, live_v1, dataset):
    v2 = make_model(dataset, 2)
    robot, token = make_robot()
    client = robot_client(token)
    services.robot_pin(robot=robot, model=v2)
    body = client.get(POLL, {"dataset": "vector"}).json()
    assert body["model_id"] == v2.pk and body["channel"] == "pinned"
    services.robot_pin(robot=robot, model=None)
    assert client.get(POLL, {"dataset": "vector"}).json()["model_id"] == live_v1.pk


def test_a_revoked_token_is_refused_at_once(robot_client, live_v1):
    robot, token = make_robot()
    client = robot_client(token)
    assert client.get(POLL, {"dataset": "vector"}).status_code == 200
    services.robot_revoke(robot=robot)
    assert client.get(POLL, {"dataset": "vector"}).status_code == 401


def test_the_poll_stores_the_model_the_robot_reports(robot_client, live_v1):
    robot, token = make_robot()
    sha = live_v1.artifacts.get(format="onnx").sha256
    robot_client(token).get(POLL, {"dataset": "vector"}, HTTP_X_MODEL_ID=str(live_v1.pk), HTTP_X_MODEL_SHA256=sha)
    robot.refresh_from_db()
    assert robot.running_model == live_v1 and robot.running_sha256 == sha and robot.last_seen_at is not None


def test_artifact_download_has_checksum_headers_and_honours_range(robot_client, dataset):
    content = bytes(range(256)) * 40
    model = make_model(dataset, 1, onnx=content)
    services.model_promote(model=model, channel="production", reason="first")
    _, token = make_robot()
    client = robot_client(token)
    client.get(POLL, {"dataset": "vector"})
    url = f"/api/v1/models/{model.pk}/artifacts/onnx"
    sha = hashlib.sha256(content).hexdigest()

    full = client.get(url)
    assert full.status_code == 200
    assert b"".join(full.streaming_content) == content
    assert full["Content-Length"] == str(len(content))
    assert full["ETag"] == f'"{sha}"' and full["X-Checksum-Sha256"] == sha

    part = client.get(url, HTTP_RANGE="bytes=1000-")
    assert part.status_code == 206
    assert b"".join(part.streaming_content) == content[1000:]
    assert part["Content-Range"] == f"bytes 1000-{len(content) - 1}/{len(content)}"
    assert part["Content-Length"] == str(len(content) - 1000)

    middle = client.get(url, HTTP_RANGE="bytes=10-19")
    assert middle.status_code == 206 and b"".join(middle.streaming_content) == content[10:20]
    assert client.get(url, HTTP_RANGE=f"bytes={len(content)}-").status_code == 416
    assert client.get(f"/api/v1/models/{model.pk}/artifacts/tflite").status_code == 404


def test_telemetry_is_accepted_and_more_than_500_records_is_413(robot_client, dataset):
    model = make_model(dataset, 1)
    _, token = make_robot()
    record = {"captured_at": "2026-11-27T10:00:00Z", "latency_ms": 41.5, "detections": [], "image_stats": {}}
    client = robot_client(token)
    ok = client.post("/api/v1/telemetry", {"dataset": "vector", "model_id": model.pk, "records": [record] * 2}, "json")
    assert ok.status_code == 202 and ok.json() == {"accepted": 2}
    big = client.post(
        "/api/v1/telemetry", {"dataset": "vector", "model_id": model.pk, "records": [record] * 501}, "json"
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "too_many_records"


def test_enrolment_over_the_api(client, db, settings):
    settings.ROBOT_ENROLLMENT_KEY = "field-key-0123456789-abcdef"
    url = "/api/v1/robots/enroll"
    body = {"enrollment_key": "field-key-0123456789-abcdef", "serial": "00e20115", "name": "Vector-A1B2"}
    created = client.post(url, body, content_type="application/json")
    assert created.status_code == 201
    assert created.json()["serial"] == "00e20115" and created.json()["token"]
    assert client.post(url, body, content_type="application/json").status_code == 409
    wrong = client.post(url, {**body, "serial": "x1", "enrollment_key": "nope"}, content_type="application/json")
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "bad_enrollment_key"
    settings.ROBOT_ENROLLMENT_KEY = ""
    assert client.post(url, {**body, "serial": "x2"}, content_type="application/json").status_code == 403
    # The token works for polling.
    assert Robot.objects.filter(serial="00e20115").exists()


@pytest.mark.usefixtures("one_throttle_window")
def test_robot_endpoints_are_throttled_per_robot(robot_client, live_v1, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"robot": "3/min"}}
    _, token_a = make_robot("aa01")
    _, token_b = make_robot("bb02")
    a, b = robot_client(token_a), robot_client(token_b)
    codes = [a.get(POLL, {"dataset": "vector"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert b.get(POLL, {"dataset": "vector"}).status_code == 200  # another robot has its own budget


def test_a_second_dataset_requires_the_dataset_parameter(robot_client, live_v1):
    dataset_row("other")
    _, token = make_robot()
    response = robot_client(token).get(POLL)
    assert response.status_code == 400 and response.json()["error"]["code"] == "dataset_required"


def test_throttle_counts_are_shared_between_processes_through_redis(db, monkeypatch):
    """Each process counts locally and adds its counts to Redis; another process sees them after its next flush."""
    from apps.deployments import robotstate

    monkeypatch.setattr(robotstate._Counters, "FLUSH_S", 0.0)
    worker_a, worker_b = robotstate._Counters(), robotstate._Counters()
    now = 1_000_000.0
    assert [worker_a.hit("robot-x", now, 60) for _ in range(3)] == [1, 2, 3]
    assert worker_b.hit("robot-x", now, 60) == 1  # has not heard from Redis yet ...
    assert worker_b.hit("robot-x", now, 60) == 5  # ... now it has: 3 from A + its own 2
    assert worker_a.hit("robot-x", now, 60) == 4  # A has not heard of B's second request yet ...
    assert worker_a.hit("robot-x", now, 60) == 7  # ... now it has (6 in Redis) plus this one
    assert worker_a.hit("robot-x", now + 60, 60) == 1  # a new window starts from zero


def test_a_robot_fetches_only_deployed_or_pinned_models_an_engineer_any(robot_client, api_as, ml_engineer, live_v1):
    candidate = make_model(live_v1.dataset, 2)
    robot, token = make_robot()
    client = robot_client(token)
    client.get(POLL, {"dataset": "vector"})
    assert client.get(f"/api/v1/models/{live_v1.pk}/artifacts/onnx").status_code == 200
    refused = client.get(f"/api/v1/models/{candidate.pk}/artifacts/onnx")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "artifact_not_found"
    assert api_as(ml_engineer).get(f"/api/v1/models/{candidate.pk}/artifacts/onnx").status_code == 200
    services.robot_pin(robot=robot, model=candidate)
    assert client.get(f"/api/v1/models/{candidate.pk}/artifacts/onnx").status_code == 200
    # Once deployed, a model stays fetchable (a robot may still be downloading it after a rollback).
    services.robot_pin(robot=robot, model=None)
    services.model_promote(model=candidate, channel="production", reason="v2")
    services.deployment_rollback(dataset=live_v1.dataset, reason="back")
    assert client.get(f"/api/v1/models/{candidate.pk}/artifacts/onnx").status_code == 200


def test_a_robot_fetches_only_models_of_the_datasets_it_polls(robot_client, live_v1):
    from apps.deployments.models import RobotDataset

    other = dataset_row("other", ["vector"])
    theirs = make_model(other, 1)
    services.model_promote(model=theirs, channel="production", reason="other's first")
    robot, token = make_robot()
    client = robot_client(token)
    assert client.get(POLL, {"dataset": "vector"}).status_code == 200
    assert client.get(f"/api/v1/models/{live_v1.pk}/artifacts/onnx").status_code == 200
    # Deployed, but for a dataset this robot never polled: it does not exist for it.
    refused = client.get(f"/api/v1/models/{theirs.pk}/artifacts/onnx")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "artifact_not_found"
    assert client.get(POLL, {"dataset": "other"}).status_code == 200
    assert client.get(f"/api/v1/models/{theirs.pk}/artifacts/onnx").status_code == 200
    # One row a robot and dataset, written on the first poll only; an unknown dataset writes nothing.
    client.get(POLL, {"dataset": "other"})
    assert client.get(POLL, {"dataset": "nope"}).status_code == 404
    polled = RobotDataset.objects.filter(robot=robot).values_list("dataset__slug", flat=True)
    assert sorted(polled) == ["other", "vector"]


@pytest.mark.usefixtures("one_throttle_window")
def test_unknown_tokens_are_throttled_per_address_and_cache_nothing(robot_client, live_v1, settings):
    from apps.deployments import robotstate

    _, token = make_robot()
    robot_client(token).get(POLL, {"dataset": "vector"})
    cached_tokens = dict(robotstate._local.tokens)
    codes = [robot_client(f"vr_guess{i}").get(POLL, {"dataset": "vector"}).status_code for i in range(40)]
    assert codes[: robotstate.BAD_TOKENS_PER_MIN] == [401] * robotstate.BAD_TOKENS_PER_MIN
    assert set(codes[robotstate.BAD_TOKENS_PER_MIN :]) == {429}
    throttled = robot_client("vr_more").get(POLL, {"dataset": "vector"})
    assert throttled.json()["error"]["code"] == "throttled"
    assert robotstate._local.tokens == cached_tokens  # nothing was kept for the guesses
    # Another address is not affected, and a known token still works from the throttled address.
    assert robot_client("vr_x").get(POLL, {"dataset": "vector"}, REMOTE_ADDR="10.0.0.9").status_code == 401
    assert robot_client(token).get(POLL, {"dataset": "vector"}).status_code == 200
    # A malformed header is an error in the envelope, not a 500.
    bad = robot_client("x" * 500).get(POLL, {"dataset": "vector"}, REMOTE_ADDR="10.0.0.8")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "authentication_failed"


@pytest.mark.usefixtures("one_throttle_window")
def test_behind_a_proxy_unknown_tokens_are_counted_per_forwarded_client(robot_client, live_v1, settings):
    """NUM_PROXIES=1 (nginx): every request comes from the proxy's address; the client is the address the proxy
    appended to X-Forwarded-For, whatever a client wrote before it."""
    from apps.deployments import robotstate

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    def guess(i, forwarded):
        client = robot_client(f"vr_guess{i}")
        return client.get(POLL, {"dataset": "vector"}, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)

    # One client forging a new first entry each time is still one client.
    codes = [guess(i, f"10.9.9.{i}, 203.0.113.7").status_code for i in range(robotstate.BAD_TOKENS_PER_MIN + 1)]
    assert codes[-2:] == [401, 429]
    # Another client behind the same proxy is not affected.
    assert guess(99, "198.51.100.2").status_code == 401


def test_a_nonexistent_dataset_is_a_404_and_creates_nothing(robot_client, live_v1):
    from apps.deployments import robotstate

    _, token = make_robot()
    client = robot_client(token)
    for slug in ("nope", "x" * 300, "../../etc"):
        response = client.get(POLL, {"dataset": slug})
        assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_dataset"
    # A NUL is refused before any view (vectormlops.inputs): PostgreSQL could not even compare it.
    response = client.get(POLL, {"dataset": "vector\x00"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_characters"
    assert set(robotstate._local.states) <= {"vector"}


@pytest.mark.usefixtures("one_throttle_window")
def test_enrolment_is_throttled_per_address_after_10_wrong_keys(client, db, settings):
    settings.ROBOT_ENROLLMENT_KEY = "the-right-key-of-24-characters"
    url = "/api/v1/robots/enroll"
    body = {"enrollment_key": "wrong", "serial": "e1", "name": ""}
    codes = [client.post(url, body, content_type="application/json").status_code for _ in range(11)]
    assert codes == [403] * 10 + [429]
    right = {**body, "enrollment_key": settings.ROBOT_ENROLLMENT_KEY}
    refused = client.post(url, right, content_type="application/json")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "throttled"
    assert not Robot.objects.filter(serial="e1").exists()
    other = client.post(url, right, content_type="application/json", REMOTE_ADDR="10.1.1.1")
    assert other.status_code == 201


def test_a_short_enrolment_key_is_refused_at_start_up_and_in_the_admin(client, make_user):
    import subprocess
    import sys

    from django.conf import settings as django_settings

    from vectormlops.errors import Forbidden, ValidationFailed

    env = {"ROBOT_ENROLLMENT_KEY": "too-short-key", "SECRET_KEY": "x" * 60, "PATH": "/usr/bin:/bin"}
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=django_settings.BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "vectormlops.settings"},
        capture_output=True,
        text=True,
    )
    assert started.returncode != 0 and "ROBOT_ENROLLMENT_KEY needs at least 24 characters" in started.stderr
    with pytest.raises(ValidationFailed) as weak:
        services.enrollment_key_create(key="a" * 23)
    assert weak.value.code == "weak_enrollment_key"
    client.force_login(make_user("root", "admin"))
    page = client.post("/admin/deployments/enrollmentkey/add/", {"key": "b" * 23, "note": "field"})
    assert page.status_code == 200 and "at least 24 characters" in page.content.decode()
    client.post("/admin/deployments/enrollmentkey/add/", {"key": "c" * 24, "note": "field"})
    assert [k.note for k in EnrollmentKey.objects.all()] == ["field"]
    # Editing and the admin's "Deactivate" action go through the services; a switched-off key enrols no robot.
    key = EnrollmentKey.objects.get()
    client.post(f"/admin/deployments/enrollmentkey/{key.pk}/change/", {"note": "yard", "is_active": "on"})
    assert EnrollmentKey.objects.get().note == "yard"
    client.post("/admin/deployments/enrollmentkey/", {"action": "deactivate", "_selected_action": [key.pk], "index": 0})
    assert not EnrollmentKey.objects.get().is_active
    with pytest.raises(Forbidden) as refused:
        services.robot_enroll(key="c" * 24, serial="00e2e5ff")
    assert refused.value.code == "enrollment_disabled"  # the only key is off
