"""Training test data: tiny generated scenes (vectorsim) stored and approved through the datasets services."""

import io
import random

import pytest

from vectorsim.scenes import scene_jpeg


def make_training_dataset(
    *, slug: str = "vec", count: int = 16, size: int = 64, seed: int = 0, val: int = 3, test: int = 2
):
    """A dataset of ``count`` approved generated scenes: the first ``val`` pinned to val, the next ``test`` to
    test, the rest to train (pinned so a tiny set always has every split)."""
    from apps.datasets.models import Image
    from apps.datasets.services import annotation_set, dataset_create, image_ingest, image_split_pin

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


@pytest.fixture
def training_dataset(db):
    return make_training_dataset()


@pytest.fixture(autouse=True)
def _only_test_receivers_of_model_trained():
    """Training's tests check that model_trained is sent; what deployments does on it (evaluation, gate) is tested
    there, and would only add work to these tests' worker and race their database teardown."""
    from apps.training.signals import model_trained

    saved = model_trained.receivers[:]
    model_trained.receivers = []
    model_trained.sender_receivers_cache.clear()
    yield
    model_trained.receivers = saved
    model_trained.sender_receivers_cache.clear()
