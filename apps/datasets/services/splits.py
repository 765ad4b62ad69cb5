"""Where an image goes (its split) and when it is labeled (its priority)."""

from collections.abc import Iterable

from django.db import transaction

from apps.datasets.models import Image
from vectormlops.errors import ValidationFailed

SPLITS = ("train", "val", "test")


def split_for(sha256: str, ratios: dict | None = None) -> str:
    """The split of an image: a pure function of its sha256 and the dataset's ratios (default 80/10/10)."""
    ratios = ratios or {"train": 0.8, "val": 0.1, "test": 0.1}
    weights = [max(0.0, float(ratios.get(s, 0) or 0)) for s in SPLITS]
    total = sum(weights) or 1.0
    # The first 52 bits of the hash, as a uniform number in [0, 1).
    point = int(sha256[:13], 16) / float(1 << 52)
    edge = 0.0
    for split, weight in zip(SPLITS, weights, strict=True):
        edge += weight / total
        if point < edge:
            return split
    return next(s for s, w in zip(SPLITS, weights, strict=True) if w > 0) if any(weights) else "train"


@transaction.atomic
def image_split_pin(*, image: Image, split: str) -> Image:
    """An admin fixes an image's split (a curated test set); the only way a split ever changes."""
    if split not in Image.Split.values:
        raise ValidationFailed(f"Unknown split {split!r}.", code="invalid_split", details={"split": split})
    image = Image.objects.select_for_update().get(pk=image.pk)
    image.split = split
    image.split_pinned = True
    image.save(update_fields=["split", "split_pinned"])
    return image


def images_prioritize(*, image_ids: Iterable[int], priority: int) -> int:
    """Set the labeling priority of images (monitoring queues drift samples with it); returns rows changed."""
    if not isinstance(priority, int) or not -32768 <= priority <= 32767:
        raise ValidationFailed("priority must be a small integer.", code="invalid_priority")
    return Image.objects.filter(pk__in=list(image_ids)).update(labeling_priority=priority)
