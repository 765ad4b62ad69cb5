"""Test data for monitoring, built directly as rows: datasets, images with chosen statistics, a trained model on a
frozen version, deployments, robots and telemetry."""

import hashlib
import itertools
from datetime import datetime

from django.utils import timezone

from apps.datasets.models import Dataset, DatasetVersion, Image, VersionItem
from apps.deployments.models import Deployment, Robot, TelemetryRecord
from apps.training.models import ModelVersion, TrainingRun

_seq = itertools.count(1)


def _sha() -> str:
    return hashlib.sha256(f"monitoring-test-{next(_seq)}".encode()).hexdigest()


def make_dataset(slug: str = "vector") -> Dataset:
    return Dataset.objects.create(slug=slug, name=slug.title(), classes=["vector"])


def flat_histogram() -> list[float]:
    return [1 / 8] * 24


def make_images(dataset: Dataset, stats: list[dict], *, uploaded_at: datetime | None = None, **common) -> list[Image]:
    """One Image per dict of statistics (brightness, contrast, sharpness, color_histogram, source, robot_serial…)."""
    rows = []
    for item in stats:
        values = {
            "brightness": 0.5,
            "contrast": 0.2,
            "sharpness": 100.0,
            "color_histogram": flat_histogram(),
            "source": Image.Source.CAMERA,
            "split": Image.Split.TRAIN,
            **common,
            **item,
        }
        sha = _sha()
        rows.append(
            Image(
                dataset=dataset,
                sha256=sha,
                storage_path=f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg",
                width=160,
                height=90,
                format="JPEG",
                size_bytes=1000,
                phash="0" * 16,
                **values,
            )
        )
    images = Image.objects.bulk_create(rows)
    if uploaded_at is not None:
        Image.objects.filter(id__in=[i.id for i in images]).update(uploaded_at=uploaded_at)
    return images


def make_trained_model(dataset: Dataset, images: list[Image], boxes: list[list] | None = None, number: int = 1):
    """A frozen DatasetVersion of ``images`` (with boxes) and a ModelVersion trained on it."""
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=number,
        classes=dataset.classes,
        image_count=len(images),
        manifest_sha256=_sha(),
    )
    VersionItem.objects.bulk_create(
        VersionItem(
            version=version,
            image=image,
            split=image.split,
            boxes=[{"class_id": 0, "box": b} for b in (boxes[i] if boxes else [])],
        )
        for i, image in enumerate(images)
    )
    run = TrainingRun.objects.create(
        dataset=dataset, dataset_version=version, base="yolov8n.yaml", status=TrainingRun.Status.SUCCEEDED
    )
    return ModelVersion.objects.create(dataset=dataset, number=number, run=run, classes=dataset.classes, imgsz=160)


def make_model(dataset: Dataset, number: int) -> ModelVersion:
    return ModelVersion.objects.create(dataset=dataset, number=number, classes=dataset.classes, imgsz=160)


def deploy(dataset: Dataset, model: ModelVersion, channel: str = "production", percent: int | None = None, at=None):
    deployment = Deployment.objects.create(
        dataset=dataset, channel=channel, model=model, canary_percent=percent, reason="test", is_live=True
    )
    if at is not None:
        Deployment.objects.filter(pk=deployment.pk).update(created_at=at)
        deployment.refresh_from_db()
    return deployment


def make_robot(serial: str, running: ModelVersion | None = None) -> Robot:
    return Robot.objects.create(
        serial=serial,
        name=f"Vector-{serial[-4:]}",
        token_hash=hashlib.sha256(serial.encode()).hexdigest(),
        running_model=running,
        last_seen_at=timezone.now(),
    )


def make_telemetry(robot: Robot, dataset: Dataset, model: ModelVersion | None, frames: list[dict]) -> list:
    """frames: dicts with captured_at, latency_ms, detections (list of {"confidence", "box"}), brightness, contrast."""
    rows = []
    for frame in frames:
        detections = frame.get("detections", [])
        confidences = [d["confidence"] for d in detections]
        rows.append(
            TelemetryRecord(
                robot=robot,
                dataset=dataset,
                model=model,
                captured_at=frame["captured_at"],
                latency_ms=frame.get("latency_ms"),
                detection_count=len(detections),
                top_confidence=max(confidences) if confidences else None,
                detections=detections,
                brightness=frame.get("brightness"),
                contrast=frame.get("contrast"),
            )
        )
    return TelemetryRecord.objects.bulk_create(rows)
