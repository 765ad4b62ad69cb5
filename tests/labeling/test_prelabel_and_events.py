"""Pre-labels with a real ultralytics model through a real Celery worker, and the live events the pages follow."""

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.files.base import File
from django.core.files.storage import default_storage

from apps.labeling import services
from apps.labeling.models import Prediction, PrelabelModel
from apps.labeling.tasks import prelabel_dataset_task
from vectormlops.events import topic_group


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """An untrained YOLOv8n saved as a .pt (built from the yaml: nothing is downloaded)."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("prelabel") / "tiny.pt"
    YOLO("yolov8n.yaml").save(str(path))
    return path


def test_promotion_prelabels_waiting_images_and_new_ones(
    celery_worker_thread, dataset, make_image, annotator, tiny_model_file
):
    waiting = [make_image(dataset, seed=1), make_image(dataset, seed=2)]
    done = make_image(dataset, seed=3)
    services.annotation_submit(image=done, user=annotator, boxes_api=[], version=0)
    with open(tiny_model_file, "rb") as fh:
        storage_path = default_storage.save("models/7/best.pt", File(fh, name="best.pt"))

    # What deployments does on a promotion: plain data, no import of later apps.
    predicted = prelabel_dataset_task.delay(dataset.pk, 7, storage_path).get(timeout=180)

    assert predicted == 2
    prelabel = PrelabelModel.objects.get(dataset=dataset)
    assert prelabel.model_id == 7 and len(prelabel.sha256) == 64
    for image in waiting:
        prediction = Prediction.objects.get(image=image)
        assert prediction.source == "server" and prediction.model_id == 7 and prediction.model_sha256 == prelabel.sha256
        assert 0.5 <= prediction.certainty <= 1.0
    assert not Prediction.objects.filter(image=done).exists()

    # A new image is pre-labeled by the image_ingested receiver through the worker.
    fresh = make_image(dataset, seed=4)

    deadline = time.monotonic() + 120
    while not Prediction.objects.filter(image=fresh, source="server").exists():
        assert time.monotonic() < deadline, "the new image was never pre-labeled"
        time.sleep(0.2)


class Listener:
    """Joins topics on the real channel layer and collects what the pages would receive."""

    def __init__(self, *topics):
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        for topic in topics:
            async_to_sync(self.layer.group_add)(topic_group(topic), self.channel)

    def events(self, count):
        """The next ``count`` events (one event loop for all receives: channels_redis keeps state per loop)."""

        async def receive():
            got = []
            for _ in range(count):
                message = await asyncio.wait_for(self.layer.receive(self.channel), timeout=10)
                got.append((message["topic"], message["event"], message["data"]))
            return got

        return async_to_sync(receive)()


@pytest.mark.django_db
def test_claims_saves_and_reviews_are_broadcast(
    dataset, make_image, annotator, reviewer, django_capture_on_commit_callbacks
):
    image = make_image(dataset, seed=1)
    listener = Listener("dataset.robots", f"image.{image.pk}")

    with django_capture_on_commit_callbacks(execute=True):
        services.image_claim_next(dataset=dataset, user=annotator)
    got = listener.events(3)
    assert ("dataset.robots", "claim", {"image_id": image.pk, "user": "annotator1"}) in got
    assert (f"image.{image.pk}", "claim", {"image_id": image.pk, "user": "annotator1"}) in got
    queue = [data for topic, event, data in got if event == "queue"]
    assert queue and queue[0]["claimed"] == 1 and queue[0]["to_label"] == 1

    with django_capture_on_commit_callbacks(execute=True):
        services.annotation_submit(image=image, user=annotator, boxes_api=[], version=0)
    got = listener.events(4)
    saved = {"image_id": image.pk, "version": 1, "user": "annotator1", "status": "submitted"}
    assert ("dataset.robots", "annotation", saved) in got
    assert (f"image.{image.pk}", "annotation", saved) in got
    assert ("dataset.robots", "claim", {"image_id": image.pk, "user": None}) in got

    with django_capture_on_commit_callbacks(execute=True):
        services.image_review(image=image, reviewer=reviewer, decision="approve")
    got = listener.events(3)
    assert any(event == "review" and data["status"] == "approved" for _, event, data in got)
