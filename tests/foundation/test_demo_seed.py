"""The demo seed: a dataset of generated scenes with their true boxes, approved, idempotent, and --if-empty."""

import pytest
from django.core.management import call_command

from apps.datasets.models import Annotation, Dataset, Image
from apps.datasets.services import version_freeze

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_a_labelled_synthetic_dataset(capsys):
    call_command("seed_demo", "--count", "6", "--unlabeled", "2")
    dataset = Dataset.objects.get(slug="demo-synthetic")
    assert dataset.name == "Synthetic demo (generated robots)" and dataset.classes == ["vector"]
    assert dataset.review_required is False
    assert Image.objects.filter(dataset=dataset, status="unlabeled").count() == 2  # something to label at once
    images = list(Image.objects.filter(dataset=dataset, status="approved"))
    assert len(images) == 6
    assert all((i.width, i.height, i.status, i.meta) == (320, 180, "approved", {"synthetic": True}) for i in images)
    assert sum(len(a.boxes) for a in Annotation.objects.filter(image__dataset=dataset)) > 0
    assert version_freeze(dataset=dataset).image_count == 6
    call_command("seed_demo", "--count", "6", "--unlabeled", "2")  # same seed, same images: nothing new
    assert Image.objects.filter(dataset=dataset).count() == 8


def test_if_empty_does_nothing_when_a_dataset_exists():
    Dataset.objects.create(slug="mine", name="Mine", classes=["vector"])
    call_command("seed_demo", "--if-empty", "--count", "3", "--unlabeled", "0")
    assert not Dataset.objects.filter(slug="demo-synthetic").exists()
    Dataset.objects.all().delete()
    call_command("seed_demo", "--if-empty", "--count", "3", "--unlabeled", "0")
    assert Image.objects.filter(dataset__slug="demo-synthetic").count() == 3


def test_only_the_embedded_default_database_is_seeded():
    from vectormlops.launcher import demo_wanted

    assert demo_wanted({}) is True
    assert demo_wanted({"VECTORMLOPS_DEMO": "0"}) is False
    assert demo_wanted({"DATABASE_URL": "postgres://db/vectormlops"}) is False
