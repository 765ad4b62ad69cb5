"""The whole loop with real processes: web server, Celery worker, two virtual Vectors and two agents.

Enrol both robots, collect 40 generated frames, label them through the API with the scenes' true boxes, train;
the gate auto-promotes the first model; both agents pick it up, verify it and send telemetry; a second model goes
to a 50% canary and each robot gets what the hash rule says; promote it, roll back, and both robots return to the
first model. A web-server restart in the middle loses no telemetry. The second training meets a broker flush while
it is queued and a web-server kill mid-run, and nothing is left stuck at the end.
"""

import io
import json
import re
import signal
import subprocess
import time
from datetime import timedelta
from hashlib import sha256
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.utils import timezone
from PIL import Image

from agent.imaging import to_jpeg
from apps.datasets.models import Dataset, ImportJob
from apps.deployments import robotstate
from apps.deployments import services as deployment_services
from apps.deployments.models import Deployment, GateDecision, Robot, TelemetryRecord
from apps.training.models import TrainingRun
from apps.training.services import training_runs_sweep
from tests.e2e.fleet import PYTHON, agent_cli, fleet, start_worker, wait_for, web_args
from tests.faults import private_redis
from vectormlops.broker import broker_messages
from vectorsim.server import generated_frame

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(480)]

ENROLLMENT_KEY = "e2e-enrolment-key-of-24-chars"
SERIALS = {"0000e2e1": 1, "0000e2e2": 2}  # serial → the virtual Vector's scene seed
FRAMES_PER_ROBOT = 20


def purge_queues() -> None:
    from vectormlops.celery import app

    with app.connection_for_write() as conn:
        for queue in ("default", "training"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue that was never declared
                pass


@pytest.fixture
def world(tmp_path, ml_engineer, settings):
    # A private Valkey for this process and every child: the test flushes it mid-run.
    with private_redis(settings) as (redis_url, _server):
        yield from _world(tmp_path, ml_engineer, redis_url)


def _world(tmp_path, ml_engineer, redis_url):
    purge_queues()
    try:
        with fleet(
            tmp_path,
            ml_engineer,
            redis_url,
            serials=SERIALS,
            enrollment_key=ENROLLMENT_KEY,
            poll_after_s=2,
            worker=True,
        ) as world:
            yield world
    finally:
        purge_queues()


def running_model(world, serial: str) -> int | None:
    """The model the agent has installed and runs (its model store's state)."""
    path = world["data"] / serial / "models" / "state.json"
    try:
        current = json.loads(path.read_text())["current"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return current["model_id"] if current else None


def expected_boxes() -> dict[str, list]:
    """sha256 of each frame as the agent uploads it (SDK-decoded, re-encoded) → the scene's true boxes."""
    boxes = {}
    for seed in SERIALS.values():
        for image_id in range(1, FRAMES_PER_ROBOT + 1):
            data, true_boxes = generated_frame(seed, image_id)
            boxes[sha256(to_jpeg(Image.open(io.BytesIO(data)))).hexdigest()] = true_boxes
    return boxes


def label_everything(api: httpx.Client) -> int:
    truth = expected_boxes()
    labelled = 0
    url = "/api/v1/images?dataset=vector"
    while url:
        page = api.get(url).raise_for_status().json()
        for image in page["results"]:
            boxes = truth[image["sha256"]]  # every uploaded frame is one the virtual Vectors generated
            current = api.get(f"/api/v1/images/{image['id']}/annotations").raise_for_status().json()
            body = {"version": current["version"], "boxes": [{"label": "vector", "box": box} for box in boxes]}
            saved = api.put(f"/api/v1/images/{image['id']}/annotations", json=body).raise_for_status().json()
            if saved.get("status") == "submitted":
                api.post(f"/api/v1/images/{image['id']}/review", json={"decision": "approve"}).raise_for_status()
            labelled += 1
        url = page.get("next")
    return labelled


def start_training(api: httpx.Client, epochs: int) -> int:
    body = {"dataset": "vector", "epochs": epochs, "imgsz": 128, "batch": 8, "base": "yolov8n.yaml"}
    run = api.post("/api/v1/training-runs", json=body)
    assert run.status_code == 201, run.text
    return run.json()["id"]


def train(api: httpx.Client, epochs: int) -> int:
    return trained_model(api, start_training(api, epochs))


def trained_model(api: httpx.Client, run_id: int) -> int:
    def finished():
        data = api.get(f"/api/v1/training-runs/{run_id}").raise_for_status().json()
        assert data["status"] not in ("failed", "cancelled"), data.get("error") or data.get("log_tail")
        return data if data["status"] == "succeeded" and data.get("model_id") else None

    return wait_for(f"training run {run_id}", finished, timeout=240, every=1)["model_id"]


def live(channel: str) -> Deployment | None:
    return Deployment.objects.filter(dataset__slug="vector", channel=channel, is_live=True).first()


def test_the_whole_loop(world):
    api, processes = world["api"], world["processes"]

    # Given a dataset whose gate auto-promotes a first model (tiny trainings reach no real mAP).
    created = api.post("/api/v1/datasets", json={"slug": "vector", "name": "Vector robots", "classes": ["vector"]})
    assert created.status_code == 201, created.text
    policy = deployment_services.policy_for(Dataset.objects.get(slug="vector"))
    policy.auto_promote, policy.min_map50, policy.min_test_images, policy.min_slice_images = True, 0.0, 1, 10_000
    policy.save()

    # Enrol both robots and collect 40 frames.
    for serial in SERIALS:
        enrolled = agent_cli(world, "enroll", "--server", world["url"], "--key", ENROLLMENT_KEY, "--serial", serial)
        assert enrolled.returncode == 0, enrolled.stderr
    config = json.loads(Path(world["robot_env"]["VECTOR_AGENT_CONFIG"]).read_text())
    assert set(config["robots"]) == set(SERIALS)
    collectors = [
        subprocess.Popen(
            [
                PYTHON,
                "-m",
                "agent",
                "--data-dir",
                str(world["data"]),
                "collect",
                "--serial",
                serial,
                "--dataset",
                "vector",
                "--every",
                "0",
                "--count",
                str(FRAMES_PER_ROBOT),
            ],
            cwd=settings.BASE_DIR,
            env={**processes.env, **world["robot_env"]},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for serial in SERIALS
    ]
    for collector in collectors:
        output = collector.communicate(timeout=180)[0]
        assert collector.returncode == 0, output
    images = api.get("/api/v1/images?dataset=vector&source=camera").raise_for_status().json()["results"]
    assert {image["robot_serial"] for image in images} == set(SERIALS)

    # Label them through the API with the true boxes, then train: the gate promotes the first model.
    assert label_everything(api) == 2 * FRAMES_PER_ROBOT
    first = train(api, epochs=2)
    wait_for("the first model in production", lambda: (d := live("production")) and d.model_id == first)

    # Both agents pick it up, verify it and report telemetry with the model they run.
    agents = {}
    for serial in SERIALS:
        agents[serial] = f"agent-{serial}"
        processes.start(
            agents[serial],
            [PYTHON, "-m", "agent", "--data-dir", str(world["data"]), "run", "--serial", serial, "--dataset", "vector",
             "--interval", "0.2", "--telemetry-every", "1", "--say-every", "5"],
            env=world["robot_env"],
        )  # fmt: skip
    for serial in SERIALS:
        wait_for(f"{serial} to run model {first}", lambda s=serial: running_model(world, s) == first, timeout=60)
        wait_for(
            f"telemetry from {serial}",
            lambda s=serial: TelemetryRecord.objects.filter(robot__serial=s, model_id=first).exists(),
            timeout=60,
        )
        # Reported with X-Model-Id / X-Model-Sha256 on the agent's next poll after it installed the model, which may
        # come after its first telemetry.
        wait_for(
            f"{serial} to report model {first} on a poll",
            lambda s=serial: Robot.objects.get(serial=s).running_model_id == first,
            timeout=60,
        )
        robot = Robot.objects.get(serial=serial)
        assert len(robot.running_sha256) == 64

    # A web-server restart while the agents run: their telemetry waits on disk and arrives afterwards.
    processes.stop("web", sig=signal.SIGKILL)  # a crash: no graceful goodbye to the agents' connections
    time.sleep(3)  # the agents keep detecting; telemetry and polls fail meanwhile
    processes.start("web", web_args(world["port"]))
    wait_for("the web server to restart", world["web_up"], timeout=60)

    # A second model goes to a 50% canary; each robot gets what the hash rule says. Its run meets two faults: the
    # broker loses its queued message (FLUSHDB of the private Valkey while no worker holds it), and the web server is
    # killed mid-run. The sweeper publishes the message again; the run carries on through the web crash.
    policy.auto_promote = False
    policy.save()
    processes.stop("worker")  # idle: a warm stop, so nothing takes the message before the flush
    run_id = start_training(api, epochs=1)
    assert [m["args"] for m in broker_messages(["training"])] == [[run_id]]
    redis.Redis.from_url(world["redis_url"]).flushdb()
    start_worker(processes, world["port"])
    swept = training_runs_sweep(now=timezone.now() + timedelta(seconds=settings.TRAINING_QUEUED_GRACE_S + 1))
    assert swept["republished"] == [run_id], swept
    wait_for("the second run to start", lambda: TrainingRun.objects.filter(pk=run_id, attempts=1).exists())
    processes.stop("web", sig=signal.SIGKILL)
    processes.start("web", web_args(world["port"]))
    wait_for("the web server to restart", world["web_up"], timeout=60)
    second = trained_model(api, run_id)
    wait_for("the second model's gate decision", lambda: GateDecision.objects.filter(candidate_id=second).exists())
    promoted = api.post(
        f"/api/v1/models/{second}/promote", json={"channel": "canary", "canary_percent": 50, "reason": "e2e canary"}
    )
    assert promoted.status_code in (200, 201), promoted.text
    canary = live("canary")
    assert canary.model_id == second
    expected = {s: second if robotstate.in_canary(s, canary.pk, 50) else first for s in SERIALS}
    tokens = {serial: robot["token"] for serial, robot in config["robots"].items()}
    for serial, model_id in expected.items():
        answer = httpx.get(
            world["url"] + "/api/v1/robot/model",
            params={"dataset": "vector"},
            headers={"Authorization": f"Bearer {tokens[serial]}"},
            timeout=30,
        )
        assert answer.json()["model_id"] == model_id
        wait_for(f"{serial} to run model {model_id}", lambda s=serial, m=model_id: running_model(world, s) == m)

    # Promote it to production: both robots run it. Roll back: both return to the first model.
    promoted = api.post(f"/api/v1/models/{second}/promote", json={"channel": "production", "reason": "e2e"})
    assert promoted.status_code in (200, 201), promoted.text
    for serial in SERIALS:
        wait_for(f"{serial} to run model {second}", lambda s=serial: running_model(world, s) == second)
    rolled = api.post("/api/v1/datasets/vector/rollback", json={"channel": "production", "reason": "e2e rollback"})
    assert rolled.status_code in (200, 201), rolled.text
    assert live("production").model_id == first
    for serial in SERIALS:
        wait_for(f"{serial} back on model {first}", lambda s=serial: running_model(world, s) == first)

    # Stop the agents: every frame they processed is on the server (none lost to the restart).
    for serial, name in agents.items():
        assert processes.stop(name) == 0, processes.log(name)
        stopped = re.search(r"stopped after (\d+) frame\(s\); (\d+) item\(s\) left", processes.log(name))
        assert stopped, processes.log(name)[-2000:]
        frames, left = int(stopped.group(1)), int(stopped.group(2))
        assert left == 0
        assert TelemetryRecord.objects.filter(robot__serial=serial).count() == frames
        assert set(TelemetryRecord.objects.filter(robot__serial=serial).values_list("model_id", flat=True)) >= {first}

    # Nothing is left stuck: no active run or import, no message waiting or held in the broker, no run folder.
    assert not TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE_STATUSES).exists()
    assert not ImportJob.objects.filter(status__in=["queued", "running"]).exists()
    assert broker_messages(["default", "training"]) == []
    assert training_runs_sweep()["folders_removed"] == [] and not list(Path(settings.TRAINING_DIR).glob("run-*"))
