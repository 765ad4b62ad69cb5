"""Deployments fixtures: a dataset row, robot clients, an empty process-local copy, fast passwords, tiny weights."""

import random
import time

import pytest

from tests.builders import dataset_row
from vectorsim.scenes import scene_jpeg


@pytest.fixture(autouse=True)
def _empty_local_copy():
    """The poll's process-local copy starts empty (see apps.deployments.robotstate)."""
    from apps.deployments import robotstate

    robotstate.reset()
    yield
    robotstate.reset()


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Many users per test in the permissions matrix: a fast hasher keeps the suite quick (tests only)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def one_throttle_window():
    """Failure and throttle counters are per clock minute (apps.deployments.robotstate): a test that counts up to a
    limit starts with at least 20 s of its minute left, so that its requests all fall in one window."""
    left = 60 - time.time() % 60
    if left < 20:
        time.sleep(left + 0.05)


@pytest.fixture
def dataset(db):
    return dataset_row()


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
