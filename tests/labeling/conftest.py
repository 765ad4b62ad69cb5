"""Labeling test data: a small dataset and generated camera images (ingested the real way)."""

import io
import random

import pytest

from apps.datasets.services import dataset_create, image_ingest
from vectorsim.scenes import scene_jpeg


@pytest.fixture
def dataset(db):
    return dataset_create(slug="robots", name="Robots", classes=["vector", "cube", "charger"])


@pytest.fixture
def make_image():
    """make_image(dataset, seed=0, source="camera", meta=None, width=160, height=96) → a new Image."""

    def _make(dataset, seed: int = 0, source: str = "camera", meta: dict | None = None, width=160, height=96):
        data, _boxes = scene_jpeg(random.Random(seed), width, height)
        image, created = image_ingest(dataset=dataset, fileobj=io.BytesIO(data), source=source, meta=meta or {})
        assert created, "seeds must differ so images differ"
        return image

    return _make
