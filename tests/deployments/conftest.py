"""Deployments test data: datasets, images with stored files, models with real artifact files, robots."""

import hashlib
import io
import random

import imagehash
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from apps.datasets.models import Annotation, Dataset, Image
from apps.deployments import services
from apps.training.models import ModelArtifact, ModelVersion
from vectorsim.scenes import scene_jpeg


def make_dataset(slug="vector", classes=("vector",)) -> Dataset:
    return Dataset.objects.create(slug=slug, name=slug.title(), classes=list(classes))


def make_image(
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


def make_robot(serial="00e20115", name=""):
    robot, token = services.robot_register(serial=serial, name=name)
    return robot, token


@pytest.fixture(autouse=True)
def _empty_local_cache():
    """The poll's process-local copy of Redis keys starts empty, like the cache (see apps.deployments.localcache)."""
    from apps.deployments import localcache

    localcache.reset()
    services.robot_seen_reset()
    yield
    localcache.reset()
    services.robot_seen_reset()


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Many users per test in the permissions matrix: a fast hasher keeps the suite quick (tests only)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dataset(db):
    return make_dataset()


@pytest.fixture
def robot_client():
    """robot_client(token) → an APIClient sending the robot's Bearer token."""
    from rest_framework.test import APIClient

    def _client(token: str):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return _client


def train_tiny_weights(root) -> bytes:
    """Train yolov8n (from its .yaml, nothing downloaded) for one epoch on 16 generated 64 px scenes."""
    from ultralytics import YOLO

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    rng = random.Random(7)
    for index in range(16):
        split = "train" if index < 12 else "val"
        data, boxes = scene_jpeg(rng, 64, 64, robots=1)
        (root / "images" / split / f"{index}.jpg").write_bytes(data)
        lines = [f"0 {(x + w / 2) / 64:.5f} {(y + h / 2) / 64:.5f} {w / 64:.5f} {h / 64:.5f}" for x, y, w, h in boxes]
        (root / "labels" / split / f"{index}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: vector\n")
    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(root / "data.yaml"),
        epochs=1,
        imgsz=64,
        batch=8,
        plots=False,
        workers=0,
        device="cpu",
        val=False,
        project=str(root / "runs"),
        name="tiny",
        exist_ok=True,
        verbose=False,
        amp=False,
    )
    weights = root / "runs" / "tiny" / "weights"
    return ((weights / "best.pt") if (weights / "best.pt").exists() else (weights / "last.pt")).read_bytes()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> bytes:
    """The bytes of a real (barely trained) ultralytics .pt, trained once per test session."""
    return train_tiny_weights(tmp_path_factory.mktemp("tiny-yolo"))
