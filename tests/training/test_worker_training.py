"""Real ultralytics training through a real Celery worker (tiny generated 64 px scenes, CPU)."""

import asyncio
import hashlib
import time

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db.models.signals import post_save

from apps.training import hooks
from apps.training.models import ModelArtifact, ModelVersion, TrainingRun
from apps.training.services import training_run_cancel, training_run_start
from apps.training.signals import model_trained
from tests.builders import make_training_dataset

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_for(predicate, timeout=150.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def follow(topic: str) -> str:
    """Join a topic's group on the real channel layer, as a browser's WebSocket consumer would; returns the channel."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from vectormlops.events import topic_group

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(topic_group(topic), channel)
    return channel


def drain(channel: str, quiet_s: float = 1.0) -> list[dict]:
    """Every message waiting on ``channel`` (stops after ``quiet_s`` without one)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def _drain():
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), quiet_s))
            except TimeoutError:
                return messages

    return async_to_sync(_drain)()


@pytest.fixture
def status_log():
    """Every status a TrainingRun row is saved with, in order (post_save fires on each transition)."""
    seen = []

    def record(sender, instance, **kwargs):
        if not seen or seen[-1] != instance.status:
            seen.append(instance.status)

    post_save.connect(record, sender=TrainingRun, weak=False, dispatch_uid="test-status-log")
    yield seen
    post_save.disconnect(sender=TrainingRun, dispatch_uid="test-status-log")


def test_a_run_trains_exports_and_registers_a_model(celery_worker_thread, ml_engineer, status_log):
    # given a tiny approved dataset and a listener for model_trained
    dataset = make_training_dataset(slug="tiny", count=16)
    announced = []

    def on_trained(sender, model_version, run, **kwargs):
        announced.append((sender, model_version.pk, run.pk))

    model_trained.connect(on_trained, weak=False, dispatch_uid="test-model-trained")
    try:
        # when a run is started (the version is frozen on the way)
        run = training_run_start(
            dataset=dataset, epochs=2, imgsz=64, batch=8, patience=5, seed=0, user=ml_engineer, trigger="api"
        )
        assert run.status == "queued" and run.dataset_version is not None and run.base == "yolov8n.yaml"
        channel = follow(f"run.{run.pk}")
        run = wait_for(lambda: (r := TrainingRun.objects.get(pk=run.pk)).status in TERMINAL and r)
        wait_for(lambda: announced, timeout=10)
    finally:
        model_trained.disconnect(dispatch_uid="test-model-trained")

    # then it went through every state and succeeded
    assert run.status == "succeeded", (run.error, run.log_tail[-2000:])
    assert status_log == ["queued", "preparing", "training", "evaluating", "succeeded"], status_log
    assert run.started_at and run.finished_at and run.heartbeat_at and run.attempts == 1
    assert run.worker_host and run.package_versions["ultralytics"] and run.package_versions["torch"]
    assert run.celery_task_id

    # browsers following run.<id> were told about every epoch and the end
    events = drain(channel)
    assert [e["data"]["epoch"] for e in events if e["event"] == "epoch"] == [1, 2], events
    assert {"losses", "map50", "map50_95", "precision", "recall", "seconds", "log_tail"} <= set(
        next(e for e in events if e["event"] == "epoch")["data"]
    )
    assert [e["data"]["status"] for e in events if e["event"] == "status"][-2:] == ["evaluating", "succeeded"], events

    # per-epoch metrics arrived, one row per epoch
    epochs = list(run.epoch_metrics.order_by("epoch"))
    assert [e.epoch for e in epochs] == [1, 2]
    assert set(epochs[0].losses) == {"box", "cls", "dfl", "val_box", "val_cls", "val_dfl"} and epochs[0].seconds > 0
    assert epochs[-1].map50 is not None and epochs[-1].precision is not None
    assert set(run.final_metrics["val"]) == {"precision", "recall", "map50", "map50_95"}
    assert "test" in run.final_metrics and run.final_metrics["epochs_completed"] == 2

    # a model was registered with both artifacts, checksums matching the stored bytes
    model = ModelVersion.objects.get(run=run)
    assert model.number == 1 and model.classes == ["vector"] and model.imgsz == 64 and model.conf_threshold == 0.25
    assert announced == [(ModelVersion, model.pk, run.pk)]
    artifacts = {a.format: a for a in model.artifacts.all()}
    assert set(artifacts) == {ModelArtifact.Format.PT, ModelArtifact.Format.ONNX}
    for artifact in artifacts.values():
        assert artifact.storage_path.startswith(f"models/tiny/{model.number}/")
        with default_storage.open(artifact.storage_path, "rb") as handle:
            data = handle.read()
        assert len(data) == artifact.size > 0
        assert hashlib.sha256(data).hexdigest() == artifact.sha256

    # and the ONNX runs in plain onnxruntime: (1, 4 + classes, anchors) for a 64 px input
    import onnxruntime

    with default_storage.open(artifacts["onnx"].storage_path, "rb") as handle:
        session = onnxruntime.InferenceSession(handle.read(), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.shape == [1, 3, 64, 64]
    (output,) = session.run(None, {model_input.name: np.zeros((1, 3, 64, 64), dtype=np.float32)})
    assert output.shape == (1, 4 + 1, 8 * 8 + 4 * 4 + 2 * 2)

    # once deployments names it the production model, the next run fine-tunes it by default
    previous = hooks.install_production_model_provider(lambda ds: model if ds.pk == dataset.pk else None)
    try:
        tuned = training_run_start(dataset=dataset, version=run.dataset_version, epochs=1, imgsz=64, batch=8)
        assert tuned.base == "production" and tuned.base_model == model
        tuned = wait_for(lambda: (r := TrainingRun.objects.get(pk=tuned.pk)).status in TERMINAL and r)
    finally:
        hooks.install_production_model_provider(previous)
    assert tuned.status == "succeeded", (tuned.error, tuned.log_tail[-2000:])
    assert tuned.model_version.number == 2 and "base production" in tuned.log_tail


def test_cancel_during_training_stops_without_a_model(celery_worker_thread, ml_engineer, status_log):
    dataset = make_training_dataset(slug="cancelme", count=16)
    run = training_run_start(dataset=dataset, epochs=200, imgsz=64, batch=8, seed=0, user=ml_engineer)
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status == "training")

    training_run_cancel(run=run, user=ml_engineer)
    run = wait_for(lambda: (r := TrainingRun.objects.get(pk=run.pk)).status in TERMINAL and r, timeout=60)

    assert run.status == "cancelled", (run.error, run.log_tail[-2000:])
    assert run.cancel_requested and run.finished_at
    assert status_log[-2:] == ["training", "cancelled"]
    assert not ModelVersion.objects.filter(dataset=dataset).exists()
    assert not ModelArtifact.objects.exists()
    assert run.epoch_metrics.count() < 200
    assert not default_storage.exists("models/cancelme")
