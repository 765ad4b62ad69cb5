"""Builders of test data for every test folder, as plain functions.

Two kinds: ``make_*`` go through the services (ingestion, annotation, registration) the way the application
writes; ``*_row`` write rows directly with chosen values (statistics, times) that services would compute.
"""

import hashlib
import io
import itertools
import random
import zipfile
from datetime import datetime
from pathlib import Path

import imagehash
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image as PILImage

from apps.datasets.models import Annotation, Dataset, DatasetVersion, Image, VersionItem
from apps.datasets.services import annotation_set, dataset_create, image_ingest, image_split_pin
from apps.deployments.models import Deployment, GateDecision, Robot, TelemetryRecord
from apps.deployments.services import robot_register
from apps.training.models import ModelArtifact, ModelVersion, TrainingRun
from apps.training.services import model_version_register, training_run_start
from vectorsim.scenes import render_scene, scene_jpeg

_seq = itertools.count(1)


def _unique_sha() -> str:
    return hashlib.sha256(f"test-row-{next(_seq)}".encode()).hexdigest()


# --- files ---------------------------------------------------------------------------------------------------


def jpeg(seed: int = 0, width: int = 96, height: int = 64) -> bytes:
    data, _ = scene_jpeg(random.Random(seed), width, height)
    return data


def png(seed: int = 0, width: int = 96, height: int = 64) -> bytes:
    image, _ = render_scene(random.Random(seed), width, height)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gif(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="GIF")
    return buffer.getvalue()


def upload(data: bytes, name: str = "x.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- datasets and images -------------------------------------------------------------------------------------


def make_dataset(slug: str = "robots", classes=("vector", "cube"), review_required: bool = True) -> Dataset:
    return dataset_create(slug=slug, name=slug.title(), classes=list(classes), review_required=review_required)


def dataset_row(slug: str = "vector", classes=("vector",)) -> Dataset:
    return Dataset.objects.create(slug=slug, name=slug.title(), classes=list(classes))


def make_image(
    dataset,
    seed: int = 0,
    *,
    boxes=None,
    status=None,
    width: int = 96,
    height: int = 64,
    source: str = "upload",
    meta: dict | None = None,
    new: bool = False,
) -> Image:
    """A generated scene ingested like an upload (``new``: fail when it is a duplicate), optionally annotated."""
    image, created = image_ingest(
        dataset=dataset, fileobj=io.BytesIO(jpeg(seed, width, height)), source=source, meta=meta or {}
    )
    assert created or not new, "seeds must differ so images differ"
    if boxes is not None or status is not None:
        annotation_set(image=image, boxes=boxes or [], status=status)
        image.refresh_from_db()
    return image


def make_training_dataset(
    *, slug: str = "vec", count: int = 16, size: int = 64, seed: int = 0, val: int = 3, test: int = 2
) -> Dataset:
    """A dataset of ``count`` approved generated scenes: the first ``val`` pinned to val, the next ``test`` to
    test, the rest to train (pinned so a tiny set always has every split)."""
    dataset = dataset_create(slug=slug, name=slug.title(), classes=["vector"])
    rng = random.Random(seed)
    for i in range(count):
        data, boxes = scene_jpeg(rng, size, size, robots=1 if i % 4 else 2)
        image, _ = image_ingest(dataset=dataset, fileobj=io.BytesIO(data), source=Image.Source.UPLOAD)
        annotation_set(
            image=image,
            boxes=[{"class_id": 0, "box": box} for box in boxes],
            status=Image.Status.APPROVED,
        )
        split = "val" if i < val else "test" if i < val + test else "train"
        image_split_pin(image=image, split=split)
    return dataset


def stored_image_row(
    dataset,
    *,
    seed: int,
    split="test",
    status="approved",
    brightness=1.0,
    source="camera",
    robot="",
    size=(64, 64),
    data: bytes | None = None,
    boxes=None,
) -> Image:
    """A generated scene stored like ingestion stores it (content-addressed), with approved boxes."""
    if data is None:
        data, boxes = scene_jpeg(random.Random(seed), size[0], size[1], brightness=brightness, robots=1)
    sha = hashlib.sha256(data).hexdigest()
    path = f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(data))
    pil = PILImage.open(io.BytesIO(data))
    luma = pil.convert("L")
    mean = sum(i * c for i, c in enumerate(luma.histogram())) / (pil.width * pil.height) / 255
    image = Image.objects.create(
        dataset=dataset,
        sha256=sha,
        storage_path=path,
        width=pil.width,
        height=pil.height,
        format="JPEG",
        size_bytes=len(data),
        source=source,
        robot_serial=robot,
        split=split,
        status=status,
        brightness=mean,
        contrast=0.1,
        sharpness=1.0,
        phash=str(imagehash.phash(pil)),
    )
    Annotation.objects.create(image=image, version=1, boxes=[{"class_id": 0, "box": list(b)} for b in boxes or []])
    return image


def flat_histogram() -> list[float]:
    return [1 / 8] * 24


def image_rows(dataset: Dataset, stats: list[dict], *, uploaded_at: datetime | None = None, **common) -> list[Image]:
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
        sha = _unique_sha()
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


# --- training ------------------------------------------------------------------------------------------------


def run_in_state(dataset, *, status="training", attempts=1, **fields) -> TrainingRun:
    """A run created by the service, then moved to ``status`` as a worker would have left it."""
    run = training_run_start(dataset=dataset, epochs=1, imgsz=64, batch=4, trigger="api")
    TrainingRun.objects.filter(pk=run.pk).update(status=status, attempts=attempts, **fields)
    run.refresh_from_db()
    return run


def register_fake_model(run: TrainingRun, tmp_path: Path, *, payload: bytes = b"weights") -> ModelVersion:
    """Register a model for ``run`` through the real service, with small stand-in files."""
    TrainingRun.objects.filter(pk=run.pk).update(status="evaluating")
    run.refresh_from_db()
    pt, onnx = tmp_path / f"best-{run.pk}.pt", tmp_path / f"best-{run.pk}.onnx"
    pt.write_bytes(payload + b".pt")
    onnx.write_bytes(payload + b".onnx")
    return model_version_register(
        run=run,
        attempt=run.attempts,
        weights_path=pt,
        onnx_path=onnx,
        metrics={"map50": 0.5},
        final_metrics={"val": {"map50": 0.5}},
    )


def yolo_checkpoint(path: Path, config: str = "yolov8n.yaml") -> Path:
    """A real ultralytics checkpoint (untrained weights of ``config``, saved the way ultralytics saves them)."""
    from ultralytics import YOLO

    YOLO(config).save(str(path))
    return path


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A torch.save archive whose pickle runs ``touch marker`` when fully unpickled: what safe loading must refuse."""
    import os

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Evil()}, str(path))
    return path


def model_row(dataset: Dataset, number: int) -> ModelVersion:
    return ModelVersion.objects.create(dataset=dataset, number=number, classes=dataset.classes, imgsz=160)


def make_model(dataset, number: int, *, pt: bytes | None = None, onnx: bytes | None = None, run=None) -> ModelVersion:
    """A ModelVersion with real artifact files in default storage (small fake bytes unless given)."""
    model = ModelVersion.objects.create(
        dataset=dataset, number=number, classes=list(dataset.classes), imgsz=64, run=run, metrics={}
    )
    for fmt, content in (("pt", pt), ("onnx", onnx)):
        if content is None:
            content = f"{fmt} bytes of model {dataset.slug} v{number} ".encode() * 50
        path = default_storage.save(f"models/{dataset.slug}/v{number}/model.{fmt}", ContentFile(content))
        ModelArtifact.objects.create(
            model=model, format=fmt, storage_path=path, sha256=hashlib.sha256(content).hexdigest(), size=len(content)
        )
    return model


def trained_model_row(dataset: Dataset, images: list[Image], boxes: list[list] | None = None, number: int = 1):
    """A frozen DatasetVersion of ``images`` (with boxes) and a ModelVersion trained on it."""
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=number,
        classes=dataset.classes,
        image_count=len(images),
        manifest_sha256=_unique_sha(),
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


# --- deployments, robots, telemetry --------------------------------------------------------------------------


def deployment_row(
    dataset: Dataset, model: ModelVersion, channel: str = "production", percent: int | None = None, at=None
) -> Deployment:
    deployment = Deployment.objects.create(
        dataset=dataset, channel=channel, model=model, canary_percent=percent, reason="test", is_live=True
    )
    if at is not None:
        Deployment.objects.filter(pk=deployment.pk).update(created_at=at)
        deployment.refresh_from_db()
    return deployment


def gate_decision_row(candidate, production, *, passed=True, test_set_sha256=None, **fields) -> GateDecision:
    """A gate decision as ``model_gate`` would have stored it (on the dataset's current test set by default)."""
    from apps.deployments.selectors import current_test_set_sha256

    sha = current_test_set_sha256(candidate.dataset) if test_set_sha256 is None else test_set_sha256
    values = {"reasons": ["stored by a test"], "comparison": {}, "policy": {}, **fields}
    return GateDecision.objects.create(
        candidate=candidate, production=production, passed=passed, test_set_sha256=sha, **values
    )


def make_robot(serial="00e20115", name="") -> tuple[Robot, str]:
    """A robot registered through the service, and its token."""
    return robot_register(serial=serial, name=name)


def robot_row(serial: str, running: ModelVersion | None = None) -> Robot:
    return Robot.objects.create(
        serial=serial,
        name=f"Vector-{serial[-4:]}",
        token_hash=hashlib.sha256(serial.encode()).hexdigest(),
        running_model=running,
        last_seen_at=timezone.now(),
    )


def telemetry_rows(robot: Robot, dataset: Dataset, model: ModelVersion | None, frames: list[dict]) -> list:
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
