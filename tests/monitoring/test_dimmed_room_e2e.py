"""Done-when, end to end and lean: a virtual Vector and the real agent against the live server; the room is dimmed,
the production model finds nothing any more, and the performance alert reaches the dashboard (in words, with a link
to the images), the e-mail outbox and a webhook receiver that checks the signature (delivered by a real worker)."""

import time
from datetime import timedelta

import numpy as np
import pytest
from django.core import mail
from django.db.models import F
from django.utils import timezone
from onnx import TensorProto, helper, numpy_helper

from agent.api import ApiClient
from agent.loops import Agent, RunOptions
from agent.vector import VectorLink
from apps.deployments import services as deployment_services
from apps.deployments.models import Deployment, TelemetryRecord
from apps.monitoring import services
from apps.monitoring.models import Alert, NotificationRule, PerformancePolicy
from tests.builders import dataset_row, make_model
from tests.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def light_sensitive_detector(imgsz: int = 64, n: int = 4) -> bytes:
    """ONNX bytes of a YOLOv8-shaped 'detector' that sees one object with confidence 4 × (mean input − 0.3):
    about 0.8 in the virtual Vector's lit room (mean ≈ 0.51 after letterboxing), nothing dimmed to 0.15 (≈ 0.24)."""
    boxes = np.zeros((1, 5, n), dtype=np.float32)
    boxes[0, :4, 0] = [32, 32, 16, 16]
    mask = np.zeros((1, 5, n), dtype=np.float32)
    mask[0, 4, 0] = 1.0
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Sub", ["mean", "offset"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "gain"], ["confidence"]),
        helper.make_node("Mul", ["mask", "confidence"], ["scores"]),
        helper.make_node("Add", ["boxes", "scores"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "light_sensitive_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, n])],
        initializer=[
            numpy_helper.from_array(np.array(0.3, dtype=np.float32), "offset"),
            numpy_helper.from_array(np.array(4.0, dtype=np.float32), "gain"),
            numpy_helper.from_array(boxes, "boxes"),
            numpy_helper.from_array(mask, "mask"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def run_agent(url: str, token: str, data_dir, frames: int) -> None:
    options = RunOptions(
        dataset="vector", frame_interval_s=0.01, telemetry_interval_s=0.1, max_frames=frames, screen=False
    )
    agent = Agent(ApiClient(url, token, timeout=30), data_dir, options, link=VectorLink("00000001"))
    assert agent.run() == 0


def wait_for(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_dimmed_room_reaches_dashboard_mailbox_and_webhook(
    celery_worker_thread,
    live_server,
    virtual_vector,
    open_browser,
    make_user,
    settings,
    webhook_receiver,
    tmp_path,
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = live_server.url
    url, receiver = webhook_receiver
    make_user("eng", "ml_engineer")
    dataset = dataset_row()
    model = make_model(dataset, 1, onnx=light_sensitive_detector())
    deployment_services.model_promote(model=model, channel="production", reason="first")
    robot, token = deployment_services.robot_register(serial="00000001", name="Vector-0001")
    PerformancePolicy.objects.create(dataset=dataset, window_minutes=5, min_frames=20)
    NotificationRule.objects.create(dataset=dataset, channel="email", target="ops@example.com", events=["alert"])
    NotificationRule.objects.create(
        dataset=dataset, channel="webhook", target=url, secret="s3cret-key", events=["alert"]
    )

    # Given the lit room: the model finds its object in every frame.
    run_agent(live_server.url, token, tmp_path / "agent", 30)
    wait_for(lambda: TelemetryRecord.objects.filter(robot=robot).count() >= 30)
    assert TelemetryRecord.objects.filter(robot=robot, detection_count=1).count() >= 30
    # Those were its first days in production (moved back in time: the test cannot wait for days).
    Deployment.objects.filter(dataset=dataset).update(created_at=timezone.now() - timedelta(hours=2))
    TelemetryRecord.objects.update(captured_at=F("captured_at") - timedelta(hours=1))

    # When the room goes dark.
    virtual_vector.set_scene(brightness=0.15)
    run_agent(live_server.url, token, tmp_path / "agent", 30)
    wait_for(lambda: TelemetryRecord.objects.filter(robot=robot).count() >= 60)
    result = services.performance_check(dataset=dataset)

    # Then the robot's and the fleet's alerts open, in words, and reach the mailbox and the webhook.
    assert result["scopes"] == {"fleet": "alert", "robot:00000001": "alert"}
    alert = Alert.objects.get(scope="robot:00000001")
    assert alert.message.startswith("Robot Vector-0001 is doing worse with model v1 than in its first days")
    assert "finds objects in 0% of frames vs 100%" in alert.message
    wait_for(lambda: len(mail.outbox) == 2 and len(receiver.received) == 2)
    body = next(m.body for m in mail.outbox if "Robot Vector-0001" in m.body)
    assert f"images: {live_server.url}/datasets/vector/?robot=00000001" in body
    hooks = [r["body"] for r in receiver.received if r["body"]["data"]["alert_id"] == alert.id]
    assert receiver.received[0]["valid"] and hooks[0]["text"] == alert.message

    page = open_browser()
    log_in(page, live_server, "eng")
    assert "Robot Vector-0001 is doing worse" in page.text_content("#waiting-alerts")
    page.click(f"#waiting-alerts a[href='/monitoring/alerts/{alert.id}/']")
    page.click("text=See the images")
    assert "/datasets/vector/?robot=00000001&uploaded_after=" in page.url
    assert "(an alert's time window)" in page.text_content("#time-filter")
    page.screenshot(path="var/screenshots/dimmed-room-images.png", full_page=True)
    assert page.js_errors == []
