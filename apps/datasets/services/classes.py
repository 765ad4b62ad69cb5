"""Editing a dataset's classes after it was created: reorder, merge and delete (add and rename live beside
dataset_create). Boxes name their class by index into ``Dataset.classes``, so every change that moves indices
rewrites the boxes of the dataset's annotations in the same transaction; frozen versions keep their own class
list and boxes (``DatasetVersion.classes``), so they keep the names they had."""

from django.db import transaction

from apps.datasets.models import Annotation, Dataset
from apps.datasets.signals import classes_remapped
from vectormlops.errors import ValidationFailed

BATCH = 500


def _locked(dataset: Dataset) -> Dataset:
    return Dataset.objects.select_for_update().get(pk=dataset.pk)


def _class_id(dataset: Dataset, class_id, field: str = "class_id") -> int:
    if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < len(dataset.classes):
        raise ValidationFailed(f"No class with id {class_id!r}.", code="unknown_class", details={field: class_id})
    return class_id


def _remap(dataset: Dataset, mapping: dict[int, int | None], names: list[str]) -> int:
    """Save the new names and move every box by ``mapping`` (old id -> new id, None drops the box). An annotation
    that lost boxes gets a new version, so a page holding the old boxes meets the stale-version dialog. Returns the
    number of boxes dropped. Receivers of ``classes_remapped`` (labeling's predictions) follow on commit."""
    dataset.classes = names
    dataset.save(update_fields=["classes"])
    dropped = 0
    changed: list[Annotation] = []
    for annotation in Annotation.objects.filter(image__dataset=dataset).select_for_update().iterator(BATCH):
        boxes = []
        for item in annotation.boxes:
            new_id = mapping.get(item["class_id"])
            if new_id is None:
                dropped += 1
                continue
            boxes.append({**item, "class_id": new_id})
        if boxes != annotation.boxes:
            if len(boxes) != len(annotation.boxes):
                annotation.version += 1
            annotation.boxes = boxes
            changed.append(annotation)
    Annotation.objects.bulk_update(changed, ["boxes", "version"], batch_size=BATCH)
    classes_remapped.send(sender=Dataset, dataset=dataset, mapping=mapping)
    return dropped


@transaction.atomic
def dataset_classes_reorder(*, dataset: Dataset, order: list[int]) -> Dataset:
    """Put the classes in a new order: ``order`` lists every current class id once, in the order wanted."""
    dataset = _locked(dataset)
    count = len(dataset.classes)
    if not isinstance(order, list) or sorted(order) != list(range(count)):
        raise ValidationFailed(
            f"order must list each of the {count} class ids once.", code="invalid_order", details={"order": order}
        )
    names = [dataset.classes[old] for old in order]
    _remap(dataset, {old: new for new, old in enumerate(order)}, names)
    return dataset


@transaction.atomic
def dataset_class_merge(*, dataset: Dataset, source_id: int, target_id: int) -> Dataset:
    """Merge class ``source_id`` into ``target_id``: its boxes take the target class and the source class goes."""
    dataset = _locked(dataset)
    source_id, target_id = _class_id(dataset, source_id, "source_id"), _class_id(dataset, target_id, "target_id")
    if source_id == target_id:
        raise ValidationFailed("A class cannot be merged into itself.", code="same_class")
    names = [n for i, n in enumerate(dataset.classes) if i != source_id]
    new_index = {old: new for new, old in enumerate(i for i in range(len(dataset.classes)) if i != source_id)}
    mapping = {old: new_index[old] for old in new_index} | {source_id: new_index[target_id]}
    _remap(dataset, mapping, names)
    return dataset


@transaction.atomic
def dataset_class_delete(*, dataset: Dataset, class_id: int) -> int:
    """Delete a class and every box of it (the page asks first, showing the box count); returns boxes deleted."""
    dataset = _locked(dataset)
    class_id = _class_id(dataset, class_id)
    names = [n for i, n in enumerate(dataset.classes) if i != class_id]
    kept = [i for i in range(len(dataset.classes)) if i != class_id]
    mapping: dict[int, int | None] = {old: new for new, old in enumerate(kept)} | {class_id: None}
    return _remap(dataset, mapping, names)


def class_box_counts(dataset: Dataset) -> list[int]:
    """How many boxes of each class the dataset's annotations hold (the delete dialog shows it)."""
    counts = [0] * len(dataset.classes)
    for boxes in Annotation.objects.filter(image__dataset=dataset).values_list("boxes", flat=True).iterator(BATCH):
        for item in boxes:
            if 0 <= item["class_id"] < len(counts):
                counts[item["class_id"]] += 1
    return counts
