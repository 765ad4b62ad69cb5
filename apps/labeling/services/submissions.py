"""A person's work on an image: submit, skip, autosaved drafts, and a reviewer's decision."""

from django.db import transaction
from django.utils import timezone

from apps.datasets.models import Annotation, Dataset, Image
from apps.datasets.services import annotation_set, boxes_from_api, image_status_set
from apps.labeling.models import Draft, ImageClaim, LabelingEvent, ReviewEvent
from apps.labeling.services.claims import (
    claim_duration_s,
    queue_broadcast,
    refuse_if_claimed_by_other,
    refuse_if_read_only,
)
from vectormlops.errors import Conflict, ValidationFailed
from vectormlops.events import broadcast

MAX_DRAFT_BOXES = 2000


def annotation_submit(*, image: Image, user, boxes_api: list, version: int) -> Annotation:
    """Save the boxes a person sends (API form) as the image's annotation: submitted for review, or approved at once
    when the dataset does not require review. A stale ``version`` is a 409 ``stale_version``; nothing is saved on
    bad input. An approved image is refused to an annotator (409 ``approved``), and so is an image someone else is
    labeling right now (409 ``claimed``: the page asks, then takes it over). Clears the person's draft and claim
    and records the submission for statistics."""
    dataset = image.dataset
    now = timezone.now()
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        refuse_if_read_only(locked, user)
        refuse_if_claimed_by_other(locked, user, now)
        boxes = boxes_from_api(dataset, boxes_api)
        status = Image.Status.SUBMITTED if dataset.review_required else Image.Status.APPROVED
        annotation = annotation_set(image=image, boxes=boxes, user=user, expected_version=version, status=status)
        duration = claim_duration_s(image, user, now)
        ImageClaim.objects.filter(image=image).delete()
        Draft.objects.filter(image=image, user=user).delete()
        LabelingEvent.objects.create(
            dataset=dataset,
            image=image,
            user=user,
            kind=LabelingEvent.Kind.SUBMIT,
            box_count=len(boxes),
            duration_s=duration,
            version=annotation.version,
        )
        data = {"image_id": image.pk, "version": annotation.version, "user": user.get_username(), "status": status}
        broadcast(f"dataset.{dataset.slug}", "annotation", data)
        broadcast(f"image.{image.pk}", "annotation", data)
        broadcast(f"dataset.{dataset.slug}", "claim", {"image_id": image.pk, "user": None})
        queue_broadcast(dataset)
    return annotation


def annotation_skip(*, image: Image, user) -> None:
    """Skip an image: release the claim; it leaves this person's queue (others still get it)."""
    now = timezone.now()
    with transaction.atomic():
        duration = claim_duration_s(image, user, now)
        ImageClaim.objects.filter(image=image, user=user).delete()
        LabelingEvent.objects.create(
            dataset=image.dataset, image=image, user=user, kind=LabelingEvent.Kind.SKIP, duration_s=duration
        )
        broadcast(f"dataset.{image.dataset.slug}", "claim", {"image_id": image.pk, "user": None})
        queue_broadcast(image.dataset)


def draft_save(*, image: Image, user, boxes: list, base_version: int = 0) -> Draft:
    """Autosave: keep a person's unsubmitted boxes (API form, lightly checked; submit validates fully)."""
    if not isinstance(boxes, list):
        raise ValidationFailed("boxes must be a list.", details={"boxes": ["Expected a list."]})
    if len(boxes) > MAX_DRAFT_BOXES:
        raise ValidationFailed("Too many boxes.", details={"boxes": [f"At most {MAX_DRAFT_BOXES} boxes."]})
    clean = []
    for i, item in enumerate(boxes):
        box = item.get("box") if isinstance(item, dict) else None
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        ):
            raise ValidationFailed(
                f"Box {i} is malformed.", details={"boxes": {str(i): ["Expected {label, box: [x, y, w, h]}."]}}
            )
        clean.append({"label": str(item.get("label", "")), "box": [float(v) for v in box]})
    with transaction.atomic():
        draft, _ = Draft.objects.update_or_create(
            image=image, user=user, defaults={"boxes": clean, "base_version": max(0, int(base_version or 0))}
        )
    return draft


def draft_discard(*, image: Image, user) -> None:
    """Forget a person's draft (they loaded someone else's boxes instead)."""
    Draft.objects.filter(image=image, user=user).delete()


def image_review(
    *, image: Image, reviewer, decision: str, comment: str = "", boxes_api: list | None = None, version=None
) -> ReviewEvent:
    """A reviewer's decision. On a submitted image: approve, or reject with a comment (it goes back first to its
    annotator's queue). On an approved image: approve again (a correction) or reject with a comment, which reopens
    it; the event records who and why. ``boxes_api`` (with the ``version`` they were based on) saves the
    reviewer's edits first, recorded as the reviewer's change; a stale version is a 409 and nothing is decided."""
    comment = (comment or "").strip()
    if decision not in ReviewEvent.Decision.values:
        raise ValidationFailed(
            "decision must be approve or reject.", details={"decision": ["Expected 'approve' or 'reject'."]}
        )
    if decision == ReviewEvent.Decision.REJECT and not comment:
        raise ValidationFailed(
            "A rejection needs a comment.", details={"comment": ["Say what to fix."]}, code="comment_required"
        )
    with transaction.atomic():
        locked = Image.objects.select_for_update(of=("self",)).select_related("dataset").get(pk=image.pk)
        if locked.status not in (Image.Status.SUBMITTED, Image.Status.APPROVED):
            raise Conflict(
                f"Only submitted or approved images can be reviewed; this one is {locked.status}.",
                code="not_submitted",
                details={"status": locked.status},
            )
        previous = Annotation.objects.filter(image=locked).select_related("updated_by").first()
        annotator = previous.updated_by if previous else None
        annotation = previous
        if boxes_api is not None:
            if version is None:
                raise ValidationFailed("Edited boxes need the version they were based on.", code="version_required")
            boxes = boxes_from_api(locked.dataset, boxes_api)
            annotation = annotation_set(image=locked, boxes=boxes, user=reviewer, expected_version=version)
        new_status = Image.Status.APPROVED if decision == ReviewEvent.Decision.APPROVE else Image.Status.REJECTED
        image_status_set(image=locked, status=new_status)
        image.status = new_status
        event = ReviewEvent.objects.create(
            image=locked,
            reviewer=reviewer,
            annotator=annotator,
            decision=decision,
            comment=comment,
            annotation_version=annotation.version if annotation else 0,
        )
        data = {
            "image_id": image.pk,
            "decision": decision,
            "comment": comment,
            "reviewer": reviewer.get_username(),
            "status": new_status,
        }
        broadcast(f"dataset.{locked.dataset.slug}", "review", data)
        broadcast(f"image.{image.pk}", "review", data)
        queue_broadcast(locked.dataset)
    return event


def images_approve_batch(*, dataset: Dataset, reviewer, image_ids: list[int]) -> int:
    """Approve the submitted images among ``image_ids`` (the review page's filtered set) as they are; images
    reviewed meanwhile are left alone. Returns how many were approved."""
    approved = 0
    with transaction.atomic():
        images = (
            Image.objects.select_for_update(of=("self",))  # not the outer-joined annotation (PostgreSQL refuses)
            .filter(dataset=dataset, pk__in=image_ids, status=Image.Status.SUBMITTED)
            .select_related("annotation__updated_by")
            .order_by("id")
        )
        for image in images:
            annotation = getattr(image, "annotation", None)
            image_status_set(image=image, status=Image.Status.APPROVED)
            ReviewEvent.objects.create(
                image=image,
                reviewer=reviewer,
                annotator=annotation.updated_by if annotation else None,
                decision=ReviewEvent.Decision.APPROVE,
                comment="batch approval",
                annotation_version=annotation.version if annotation else 0,
            )
            approved += 1
        if approved:
            broadcast(f"dataset.{dataset.slug}", "review", {"batch": approved, "reviewer": reviewer.get_username()})
            queue_broadcast(dataset)
    return approved
