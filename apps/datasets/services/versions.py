"""Frozen, numbered versions of a dataset's approved annotations."""

import hashlib
import json
from collections import Counter

from django.db import transaction

from apps.datasets.models import Dataset, DatasetVersion, Image, VersionItem
from apps.datasets.services.splits import SPLITS
from vectormlops.errors import ValidationFailed
from vectormlops.events import broadcast


def _manifest_sha256(classes: list[str], rows: list[tuple[str, str, list]]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"classes": classes}, sort_keys=True, separators=(",", ":")).encode())
    for sha, split, boxes in sorted(rows, key=lambda r: r[0]):
        line = json.dumps([sha, split, boxes], sort_keys=True, separators=(",", ":"))
        digest.update(b"\n" + line.encode())
    return digest.hexdigest()


@transaction.atomic
def version_freeze(*, dataset: Dataset, user=None, note: str = "") -> DatasetVersion:
    """Freeze the approved annotations (submitted too when review is off) into a new numbered version.
    Later edits never change it; two freezes of the same content have the same manifest hash, so a freeze with no
    change since the latest version returns that version instead of a copy. The returned version's ``created`` says
    which happened (False: nothing changed, the existing version came back)."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    statuses = [Image.Status.APPROVED] if dataset.review_required else [Image.Status.APPROVED, Image.Status.SUBMITTED]
    rows = list(
        Image.objects.filter(dataset=dataset, status__in=statuses)
        .order_by("id")
        .values_list("id", "sha256", "split", "annotation__boxes")
    )
    if not rows:
        raise ValidationFailed(
            "There are no approved images to freeze.", code="nothing_to_freeze", details={"dataset": dataset.slug}
        )
    classes = list(dataset.classes)
    split_counts = Counter()
    box_counts = Counter()
    for _, _, split, boxes in rows:
        split_counts[split] += 1
        for box in boxes or []:
            cid = box["class_id"]
            box_counts[classes[cid] if cid < len(classes) else str(cid)] += 1
    manifest_sha256 = _manifest_sha256(classes, [(sha, split, boxes or []) for _, sha, split, boxes in rows])
    last = DatasetVersion.objects.filter(dataset=dataset).order_by("-number").first()
    if last is not None and last.manifest_sha256 == manifest_sha256:
        last.created = False
        return last
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=(last.number if last else 0) + 1,
        classes=classes,
        counts={
            "images": {s: split_counts.get(s, 0) for s in SPLITS},
            "boxes": {name: box_counts.get(name, 0) for name in classes},
        },
        image_count=len(rows),
        manifest_sha256=manifest_sha256,
        created_by=user if getattr(user, "pk", None) else None,
        note=note[:200],
    )
    VersionItem.objects.bulk_create(
        (VersionItem(version=version, image_id=pk, split=split, boxes=boxes or []) for pk, _, split, boxes in rows),
        batch_size=1000,
    )
    broadcast(f"dataset.{dataset.slug}", "version_frozen", {"id": version.pk, "number": version.number})
    version.created = True
    return version
