"""Labeling test data: a small dataset and generated camera images (ingested the real way)."""

import pytest

from apps.datasets.services import dataset_create
from tests import builders


@pytest.fixture
def dataset(db):
    return dataset_create(slug="robots", name="Robots", classes=["vector", "cube", "charger"])


@pytest.fixture
def make_image():
    """make_image(dataset, seed=0, source="camera", meta=None, width=160, height=96) → a new Image."""

    def _make(dataset, seed: int = 0, source: str = "camera", meta: dict | None = None, width=160, height=96):
        return builders.make_image(dataset, seed, source=source, meta=meta, width=width, height=height, new=True)

    return _make
