"""Editing classes after creation: boxes follow reorder, merge and delete; frozen versions keep their names."""

import pytest

from apps.datasets.models import Annotation
from apps.datasets.services import (
    boxes_to_api,
    class_box_counts,
    dataset_class_delete,
    dataset_class_merge,
    dataset_classes_reorder,
    version_freeze,
)
from tests.builders import make_dataset, make_image
from vectormlops.errors import ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def three(db):
    dataset = make_dataset(slug="three", classes=("vector", "cube", "charger"))
    one = make_image(
        dataset,
        1,
        status="approved",
        boxes=[
            {"class_id": 0, "box": [1, 1, 10, 10]},
            {"class_id": 1, "box": [20, 20, 10, 10]},
            {"class_id": 2, "box": [40, 20, 10, 10]},
        ],
    )
    two = make_image(dataset, 2, status="submitted", boxes=[{"class_id": 1, "box": [5, 5, 8, 8]}])
    return dataset, one, two


def labels(dataset, image):
    dataset.refresh_from_db()
    return [b["label"] for b in boxes_to_api(dataset, Annotation.objects.get(image=image).boxes)]


def test_merge_moves_the_boxes_and_keeps_the_other_indices_right(three):
    dataset, one, two = three
    version = version_freeze(dataset=dataset, user=None)
    dataset_class_merge(dataset=dataset, source_id=1, target_id=0)  # cube -> vector
    dataset.refresh_from_db()
    assert dataset.classes == ["vector", "charger"]
    assert labels(dataset, one) == ["vector", "vector", "charger"]
    assert labels(dataset, two) == ["vector"]
    assert Annotation.objects.get(image=one).version == 1, "no box was lost, so no new version"
    version.refresh_from_db()
    assert version.classes == ["vector", "cube", "charger"], "a frozen version keeps the names it had"
    frozen = version.items.get(image=one).boxes
    assert [version.classes[b["class_id"]] for b in frozen] == ["vector", "cube", "charger"]


def test_delete_drops_its_boxes_and_shifts_the_later_classes(three):
    dataset, one, two = three
    assert class_box_counts(dataset) == [1, 2, 1]
    assert dataset_class_delete(dataset=dataset, class_id=1) == 2
    dataset.refresh_from_db()
    assert dataset.classes == ["vector", "charger"]
    assert labels(dataset, one) == ["vector", "charger"]
    assert labels(dataset, two) == []
    assert Annotation.objects.get(image=two).version == 2, "a page holding the lost box meets a stale version"


def test_reorder_keeps_every_box_on_its_name(three):
    dataset, one, _two = three
    dataset_classes_reorder(dataset=dataset, order=[2, 0, 1])
    dataset.refresh_from_db()
    assert dataset.classes == ["charger", "vector", "cube"]
    assert labels(dataset, one) == ["vector", "cube", "charger"]


@pytest.mark.parametrize(
    "call, code",
    [
        (lambda d: dataset_classes_reorder(dataset=d, order=[0, 0, 1]), "invalid_order"),
        (lambda d: dataset_class_merge(dataset=d, source_id=1, target_id=1), "same_class"),
        (lambda d: dataset_class_merge(dataset=d, source_id=7, target_id=1), "unknown_class"),
        (lambda d: dataset_class_delete(dataset=d, class_id=-1), "unknown_class"),
    ],
)
def test_bad_edits_are_refused_and_change_nothing(three, call, code):
    dataset, one, _two = three
    with pytest.raises(ValidationFailed) as caught:
        call(dataset)
    assert caught.value.code == code
    assert labels(dataset, one) == ["vector", "cube", "charger"]
