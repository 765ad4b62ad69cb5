"""The one writer of boxes."""

from django.db import transaction

from apps.datasets.boxes import boxes_validate
from apps.datasets.models import Annotation, Image
from vectormlops.errors import Conflict, ValidationFailed


@transaction.atomic
def annotation_set(*, image: Image, boxes, user=None, expected_version: int | None = None, status=None) -> Annotation:
    """Replace an image's boxes (DB form). Optimistic concurrency: a stale ``expected_version`` is a 409.
    Locks the image row, then the annotation row (always in that order). Optionally sets the image's status."""
    locked = Image.objects.select_for_update().select_related("dataset").get(pk=image.pk)
    cleaned = boxes_validate(
        boxes=boxes, class_count=len(locked.dataset.classes), width=locked.width, height=locked.height
    )
    if status is not None and status not in Image.Status.values:
        raise ValidationFailed(f"Unknown status {status!r}.", code="invalid_status", details={"status": status})
    annotation = Annotation.objects.select_for_update().filter(image=locked).first()
    current = annotation.version if annotation else 0
    if expected_version is not None and expected_version != current:
        raise Conflict(
            "Someone saved this image's boxes after you loaded them.",
            code="stale_version",
            details={"current_version": current},
        )
    if annotation is None:
        annotation = Annotation(image=locked)
    annotation.boxes = cleaned
    annotation.version = current + 1
    annotation.updated_by = user if getattr(user, "pk", None) and not getattr(user, "is_robot", False) else None
    annotation.save()
    if status is not None and locked.status != status:
        locked.status = status
        locked.save(update_fields=["status"])
    image.status = locked.status
    return annotation


def image_status_set(*, image: Image, status: str) -> Image:
    """Move an image through the labeling workflow (a reviewer's decision); boxes change only via annotation_set."""
    if status not in Image.Status.values:
        raise ValidationFailed(f"Unknown status {status!r}.", code="invalid_status", details={"status": status})
    Image.objects.filter(pk=image.pk).update(status=status)
    image.status = status
    return image
