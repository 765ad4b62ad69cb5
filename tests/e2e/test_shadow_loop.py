"""Shadow deployment end to end (issue 19) with real processes: the web server, two virtual Vectors in different
generated rooms and two agents.

A production and a shadow model (constant ONNX detectors registered as ModelVersions, so nothing is trained: the
shadow sees a robot where production does not) are deployed; both agents run the shadow beside production, report
both models' detections, and upload the frames they disagree on; those arrive first in the labeling queue, are
labelled and approved through the API, and the gate's shadow evidence passes or refuses as the policy says.
"""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.datasets.models import Dataset, Image
from apps.deployments import services as deployment_services
from apps.deployments import shadow
from apps.deployments.models import TelemetryRecord
from apps.deployments.services.shadow import shadow_end
from apps.labeling.services.claims import image_claim_next, image_claim_release
from apps.monitoring import services as monitoring
from tests.agent.fakes import constant_detector
from tests.builders import make_image, make_model
from tests.e2e.fleet import PYTHON, agent_cli, fleet, wait_for
from tests.faults import private_redis

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

ENROLLMENT_KEY = "e2e-shadow-enrolment-key-24"
SERIALS = {"0000ad01": 3, "0000ad02": 4}  # serial → the virtual Vector's room (scene seed)
LIVE = constant_detector([(32, 32, 16, 16, 0.9)])  # production: a robot in the middle
SHADOW = constant_detector([(12, 44, 10, 10, 0.8)])  # the candidate: a robot somewhere else


@pytest.fixture
def world(tmp_path, ml_engineer, settings):
    with private_redis(settings) as (redis_url, _server):
        with fleet(
            tmp_path, ml_engineer, redis_url, serials=SERIALS, enrollment_key=ENROLLMENT_KEY, poll_after_s=1
        ) as world:
            yield world


def test_a_shadow_model_proves_itself_on_the_robots_frames(world, ml_engineer):
    api = world["api"]
    created = api.post("/api/v1/datasets", json={"slug": "vector", "name": "Vector robots", "classes": ["vector"]})
    assert created.status_code == 201, created.text
    dataset = Dataset.objects.get(slug="vector")
    live_model, candidate = make_model(dataset, 1, onnx=LIVE), make_model(dataset, 2, onnx=SHADOW)
    deployment_services.model_promote(model=live_model, channel="production", reason="the demo model")
    promoted = api.post(
        f"/api/v1/models/{candidate.pk}/promote",
        json={"channel": "shadow", "shadow_percent": 100, "reason": "see it in the rooms the fleet is in"},
    )
    assert promoted.status_code == 201, promoted.text

    for serial in SERIALS:
        enrolled = agent_cli(world, "enroll", "--server", world["url"], "--key", ENROLLMENT_KEY, "--serial", serial)
        assert enrolled.returncode == 0, enrolled.stderr
        # One disagreement upload a second (3600 an hour), a roomy shadow budget: every frame runs both models.
        world["processes"].start(
            f"agent-{serial}",
            [PYTHON, "-m", "agent", "--data-dir", str(world["data"]), "run", "--serial", serial, "--dataset", "vector",
             "--interval", "0.1", "--telemetry-every", "1", "--max-uploads-per-hour", "3600",
             "--shadow-budget-ms", "60000", "--no-screen"],
            env=world["robot_env"],
        )  # fmt: skip

    # Both robots report both models' detections on the same frames, and upload the frames they disagree on.
    for serial in SERIALS:
        wait_for(
            f"shadow telemetry from {serial}",
            lambda s=serial: TelemetryRecord.objects.filter(robot__serial=s, shadow_model=candidate).count() >= 5,
        )
    disagreements = wait_for(
        "disagreement frames from both rooms",
        lambda: (
            (images := list(Image.objects.filter(dataset=dataset, source=Image.Source.SHADOW_DISAGREEMENT)))
            and {i.robot_serial for i in images} == set(SERIALS)
            and len(images) >= 3
            and images
        ),
    )
    meta = disagreements[0].meta
    assert meta["model_id"] == live_model.pk and meta["shadow"]["model_id"] == candidate.pk
    assert meta["predictions"] and meta["shadow"]["predictions"] and meta["disagreement"] > 0

    monitoring.telemetry_aggregate(until=timezone.now())
    numbers = shadow.comparison(candidate.pk)
    assert numbers["overall"]["frames"] >= 10 and numbers["overall"]["agreement"] == 0.0
    assert {row["robot"] for row in numbers["per_robot"]} == set(SERIALS)  # one room each
    assert numbers["overall"]["live"]["detection_rate"] == 1.0 and numbers["overall"]["shadow"]["detection_rate"] == 1.0

    # The disagreement frames come first in the labeling queue (before a camera frame uploaded earlier).
    make_image(dataset, seed=99, source=Image.Source.CAMERA)
    Image.objects.filter(source=Image.Source.CAMERA).update(uploaded_at=timezone.now() - timedelta(days=1))
    first_in_queue = image_claim_next(dataset=dataset, user=ml_engineer)
    assert first_in_queue.source == Image.Source.SHADOW_DISAGREEMENT
    image_claim_release(image=first_in_queue, user=ml_engineer)
    listed = api.get("/api/v1/images?dataset=vector&source=shadow_disagreement").raise_for_status().json()["results"]
    assert len(listed) >= 3

    # A person labels three of them through the API: the robot is where the candidate saw it.
    for image in listed[:3]:
        frame = Image.objects.get(pk=image["id"])
        box = frame.meta["shadow"]["predictions"][0]["box"]
        current = api.get(f"/api/v1/images/{image['id']}/annotations").raise_for_status().json()
        body = {"version": current["version"], "boxes": [{"label": "vector", "box": box}]}
        saved = api.put(f"/api/v1/images/{image['id']}/annotations", json=body).raise_for_status().json()
        if saved.get("status") == "submitted":
            api.post(f"/api/v1/images/{image['id']}/review", json={"decision": "approve"}).raise_for_status()
    field = shadow.field_scores(dataset, candidate.pk)
    assert field["labelled"] == 3
    assert field["shadow"]["recall"] == 1.0 and field["live"]["recall"] == 0.0

    # The gate, as the policy says: agreement required → refused; the field comparison decides → passes.
    policy = deployment_services.policy_for(dataset)
    policy.shadow_min_frames, policy.shadow_min_agreement, policy.shadow_min_labelled = 10, 0.5, 3
    policy.save()
    passed, reasons, evidence = shadow.shadow_check(model=candidate, live_model=live_model, policy=policy)
    assert not passed and any("agree on 0.0%" in r for r in reasons)
    assert evidence["numbers"]["frames"] >= 10 and evidence["field"]["labelled"] == 3
    policy.shadow_min_agreement = 0.0
    policy.save()
    passed, reasons, _ = shadow.shadow_check(model=candidate, live_model=live_model, policy=policy)
    assert passed, reasons
    assert any("F1 is 1.00 against the live model's 0.00" in r for r in reasons)

    # Ending the shadow is in the history; robots drop the shadow model.
    ended = shadow_end(dataset=dataset, reason="seen enough")
    history = api.get("/api/v1/datasets/vector/deployments").raise_for_status().json()["results"]
    assert history[0]["id"] == ended.pk and history[0]["channel"] == "shadow" and history[0]["action"] == "end"
    for serial in SERIALS:
        shadow_state = Path(world["data"]) / serial / "models" / "shadow" / "state.json"
        wait_for(f"{serial} to drop the shadow model", lambda p=shadow_state: not p.exists(), timeout=30)
    assert json.loads(promoted.text)["shadow_percent"] == 100
