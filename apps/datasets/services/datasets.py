"""Datasets and their ordered class names."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from apps.datasets.boxes import finite_number
from apps.datasets.models import Dataset
from apps.datasets.services.splits import SPLITS
from vectormlops.errors import Conflict, ValidationFailed


def _clean_class_names(classes) -> list[str]:
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValidationFailed("classes must be a list of names.", code="invalid_classes")
    names = [c.strip() for c in classes]
    if any(not n or len(n) > 100 for n in names):
        raise ValidationFailed("Class names must be 1 to 100 characters.", code="invalid_classes")
    if len(set(names)) != len(names):
        raise ValidationFailed("Class names must be unique.", code="invalid_classes")
    return names


def _clean_split_ratios(ratios) -> dict:
    if not isinstance(ratios, dict) or set(ratios) - set(SPLITS):
        raise ValidationFailed("split_ratios must map train/val/test to numbers.", code="invalid_split_ratios")
    cleaned = {s: finite_number(ratios.get(s, 0)) for s in SPLITS}
    if any(v is None or v < 0 for v in cleaned.values()) or not cleaned["train"]:
        raise ValidationFailed("split_ratios must be non-negative and give train a share.", code="invalid_split_ratios")
    return cleaned


def dataset_create(
    *,
    slug: str,
    name: str,
    classes: list[str],
    created_by=None,
    review_required: bool = True,
    split_ratios: dict | None = None,
) -> Dataset:
    """A new dataset (detection task) with its ordered class names; a taken slug is a 409."""
    dataset = Dataset(
        slug=slug,
        name=name,
        classes=_clean_class_names(classes),
        review_required=review_required,
        created_by=created_by,
    )
    if split_ratios is not None:
        dataset.split_ratios = _clean_split_ratios(split_ratios)
    try:
        dataset.full_clean(validate_unique=False)
    except DjangoValidationError as exc:
        raise ValidationFailed("; ".join(exc.messages), code="invalid", details=exc.message_dict) from exc
    try:
        with transaction.atomic():
            dataset.save()
    except IntegrityError as exc:
        raise Conflict(f"The slug {slug!r} is taken.", code="slug_taken", details={"slug": slug}) from exc
    return dataset


@transaction.atomic
def dataset_class_add(*, dataset: Dataset, name: str) -> int:
    """Append a class (boxes refer to classes by index, so appending never changes existing boxes); returns its id."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    names = _clean_class_names([*dataset.classes, name])
    dataset.classes = names
    dataset.save(update_fields=["classes"])
    return len(names) - 1


@transaction.atomic
def dataset_class_rename(*, dataset: Dataset, class_id: int, name: str) -> Dataset:
    """Rename a class in place; boxes store the class id, so nothing else changes."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    if not isinstance(class_id, int) or not 0 <= class_id < len(dataset.classes):
        raise ValidationFailed(f"No class with id {class_id}.", code="unknown_class", details={"class_id": class_id})
    names = list(dataset.classes)
    names[class_id] = name
    dataset.classes = _clean_class_names(names)
    dataset.save(update_fields=["classes"])
    return dataset
