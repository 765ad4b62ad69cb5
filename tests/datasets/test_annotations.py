"""annotation_set is the one writer of boxes: it validates, versions, and refuses stale writes."""

import pytest

from apps.datasets.models import Annotation, Image
from apps.datasets.services import (
    annotation_set,
    boxes_from_api,
    boxes_to_api,
    dataset_class_add,
    dataset_class_rename,
    image_split_pin,
    images_prioritize,
    split_for,
)
from tests.builders import make_image
from vectormlops.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db


def test_boxes_are_saved_with_a_growing_version_and_extra_keys_dropped(dataset):
    image = make_image(dataset, 1)
    first = annotation_set(image=image, boxes=[{"class_id": 0, "box": [1, 2, 30, 20], "confidence": 0.9}])
    assert first.version == 1 and first.boxes == [{"class_id": 0, "box": [1.0, 2.0, 30.0, 20.0]}]
    second = annotation_set(image=image, boxes=[], expected_version=1, status="submitted")
    assert second.version == 2 and second.boxes == []
    assert Image.objects.get(pk=image.pk).status == "submitted"


def test_a_stale_version_is_a_conflict_naming_the_current_one(dataset):
    image = make_image(dataset, 1)
    annotation_set(image=image, boxes=[])
    annotation_set(image=image, boxes=[], expected_version=1)
    with pytest.raises(Conflict) as caught:
        annotation_set(image=image, boxes=[{"class_id": 0, "box": [0, 0, 5, 5]}], expected_version=1)
    assert caught.value.code == "stale_version" and caught.value.details == {"current_version": 2}
    assert Annotation.objects.get(image=image).boxes == []


@pytest.mark.parametrize(
    "box, index",
    [
        ({"class_id": 2, "box": [0, 0, 5, 5]}, 1),  # no class 2 in ["vector", "cube"]
        ({"class_id": 0, "box": [0, 0, 0, 5]}, 1),  # zero width
        ({"class_id": 0, "box": [90, 0, 10, 5]}, 1),  # past the right edge of a 96 px image
        ({"class_id": 0, "box": [0, 0, 5]}, 1),
        ({"class_id": "0", "box": [0, 0, 5, 5]}, 1),
        ({"class_id": 0, "box": [0, 0, float("nan"), 5]}, 1),
    ],
)
def test_bad_boxes_are_refused_naming_the_box(dataset, box, index):
    image = make_image(dataset, 1)
    with pytest.raises(ValidationFailed) as caught:
        annotation_set(image=image, boxes=[{"class_id": 0, "box": [1, 1, 5, 5]}, box])
    assert caught.value.details["index"] == index and str(index) in caught.value.details["boxes"]
    assert not Annotation.objects.filter(image=image).exists()


def test_a_hair_over_the_border_is_clamped_and_too_many_boxes_are_refused(dataset):
    image = make_image(dataset, 1)
    saved = annotation_set(image=image, boxes=[{"class_id": 0, "box": [-0.2, 0, 96.3, 64.1]}])
    assert saved.boxes[0]["box"] == [0.0, 0.0, 96.0, 64.0]
    with pytest.raises(ValidationFailed) as caught:
        annotation_set(image=image, boxes=[{"class_id": 0, "box": [0, 0, 1, 1]}] * 501)
    assert caught.value.code == "too_many_boxes"


def test_api_boxes_convert_by_label_and_renaming_a_class_loses_nothing(dataset):
    image = make_image(dataset, 1)
    db_boxes = boxes_from_api(dataset, [{"label": "cube", "box": [1, 1, 5, 5]}])
    assert db_boxes == [{"class_id": 1, "box": [1, 1, 5, 5]}]
    annotation_set(image=image, boxes=db_boxes)
    with pytest.raises(ValidationFailed) as caught:
        boxes_from_api(dataset, [{"label": "sphere", "box": [1, 1, 5, 5]}])
    assert caught.value.code == "unknown_label"
    dataset = dataset_class_rename(dataset=dataset, class_id=1, name="charger")
    assert dataset_class_add(dataset=dataset, name="cube") == 2
    dataset.refresh_from_db()
    stored = Annotation.objects.get(image=image).boxes
    assert boxes_to_api(dataset, stored) == [{"label": "charger", "box": [1.0, 1.0, 5.0, 5.0]}]


def test_the_split_is_a_pure_function_of_the_hash_and_only_a_pin_changes_it(dataset):
    sha = "ab" * 32
    assert split_for(sha) == split_for(sha) == split_for(sha, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert split_for(sha, {"train": 1, "val": 0, "test": 0}) == "train"
    assert split_for(sha, {"train": 0.0001, "val": 0, "test": 1}) == "test"
    shares = [split_for(f"{i:064x}"[::-1]) for i in range(2000)]
    assert 0.75 < shares.count("train") / 2000 < 0.85
    image = make_image(dataset, 1)
    assert image.split == split_for(image.sha256, dataset.split_ratios)
    other = "test" if image.split != "test" else "val"
    annotation_set(image=image, boxes=[], status="approved")
    assert Image.objects.get(pk=image.pk).split == image.split  # labeling never moves it
    pinned = image_split_pin(image=image, split=other)
    assert (pinned.split, pinned.split_pinned) == (other, True)
    with pytest.raises(ValidationFailed):
        image_split_pin(image=image, split="holdout")


def test_prioritizing_images_sets_their_labeling_priority(dataset):
    a, b = make_image(dataset, 1), make_image(dataset, 2)
    assert images_prioritize(image_ids=[a.pk], priority=10) == 1
    assert list(Image.objects.order_by("-labeling_priority").values_list("id", flat=True)) == [a.pk, b.pk]
