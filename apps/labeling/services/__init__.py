"""Labeling workflow: claims and the queue, submit/skip, drafts, review, predictions. Boxes are written only through
``apps.datasets.services.annotation_set`` (validation, versioning and row locking live there)."""

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, F, IntegerField, Q, Value, When
from django.utils import timezone

from apps.datasets.models import Annotation, Dataset, Image
from apps.datasets.services import annotation_set, boxes_from_api
from apps.labeling.models import Draft, ImageClaim, LabelingEvent, Prediction, PrelabelModel, ReviewEvent
from vectormlops.errors import Conflict, ValidationFailed
from vectormlops.events import broadcast

CLAIM_TTL = timedelta(minutes=10)
# Time on one image counted in statistics at most (a tab left open over lunch is not labeling time).
MAX_COUNTED_DURATION_S = 600.0
MAX_DRAFT_BOXES = 2000
PRIORITY_SOURCES = (Image.Source.FEEDBACK, Image.Source.LOW_CONFIDENCE)
# Images a person may still work on; approved/submitted ones leave the labeling queue.
QUEUE_STATUSES = (Image.Status.UNLABELED, Image.Status.IN_PROGRESS, Image.Status.REJECTED)


# --- queue and claims -----------------------------------------------------------------------------------------------


def _queue_candidates(*, dataset: Dataset, user, now, exclude_ids) -> Any:
    """Claimable images for ``user`` in queue order (see image_claim_next)."""
    skipped = LabelingEvent.objects.filter(user=user, kind=LabelingEvent.Kind.SKIP, dataset=dataset).values("image_id")
    qs = (
        Image.objects.filter(dataset=dataset, status__in=QUEUE_STATUSES)
        .filter(Q(claim__isnull=True) | Q(claim__expires_at__lte=now) | Q(claim__user=user))
        .exclude(id__in=skipped)
        .exclude(id__in=list(exclude_ids))
        .annotate(
            # Rejected images go back to whoever submitted them, first in their queue; others get them last.
            rejected_rank=Case(
                When(status=Image.Status.REJECTED, annotation__updated_by=user, then=Value(0)),
                When(status=Image.Status.REJECTED, then=Value(2)),
                default=Value(1),
                output_field=IntegerField(),
            ),
            source_rank=Case(When(source__in=PRIORITY_SOURCES, then=Value(0)), default=Value(1)),
        )
        .order_by(
            "rejected_rank",
            "-labeling_priority",
            "source_rank",
            # Least certain model predictions first; images without a prediction after them.
            F("prediction__certainty").asc(nulls_last=True),
            "uploaded_at",
            "id",
        )
    )
    return qs


def _own_claims(*, dataset: Dataset, user, now, exclude_ids):
    return (
        ImageClaim.objects.filter(
            user=user, image__dataset=dataset, expires_at__gt=now, image__status__in=QUEUE_STATUSES
        )
        .exclude(image_id__in=list(exclude_ids))
        .order_by("claimed_at", "image_id")
    )


def image_claim_next(*, dataset: Dataset, user, exclude_ids=(), ttl: timedelta = CLAIM_TTL) -> Image | None:
    """Claim the next image for ``user`` (or return one they already hold); None when the queue is empty.

    Two annotators never get the same image: candidate rows are locked with SKIP LOCKED on PostgreSQL (SQLite runs
    transactions IMMEDIATE, so they are serialized), and the claim is re-read after locking because the candidate
    list may come from a snapshot older than a claim committed meanwhile. Order: the annotator's own rejected images,
    Image.labeling_priority (high first), robot feedback / low-confidence images, least model certainty, oldest."""
    now = timezone.now()
    with transaction.atomic():
        own = _own_claims(dataset=dataset, user=user, now=now, exclude_ids=exclude_ids).first()
        if own is not None:
            own.expires_at = now + ttl
            own.save(update_fields=["expires_at"])
            return own.image
        tried: list[int] = []
        for _attempt in range(20):
            candidates = _queue_candidates(dataset=dataset, user=user, now=now, exclude_ids=[*exclude_ids, *tried])
            if connection.features.has_select_for_update_skip_locked:
                # LIMIT 1: lock only the row we take, so a concurrent annotator gets the next one, not nothing.
                candidates = candidates.select_for_update(skip_locked=True, of=("self",))
            image = candidates.first()
            if image is None:
                return None
            claim = ImageClaim.objects.select_for_update().filter(image=image).first()
            if claim is not None and claim.user_id != user.pk and claim.expires_at > now:
                tried.append(image.pk)  # claimed after our snapshot was taken
                continue
            if claim is None:
                try:
                    with transaction.atomic():
                        ImageClaim.objects.create(image=image, user=user, claimed_at=now, expires_at=now + ttl)
                except IntegrityError:
                    tried.append(image.pk)  # another transaction inserted the claim first
                    continue
            else:
                claim.user, claim.claimed_at, claim.expires_at = user, now, now + ttl
                claim.save(update_fields=["user", "claimed_at", "expires_at"])
            _broadcast_claim(image, user)
            return image
    return None


def image_claim(*, image: Image, user, ttl: timedelta = CLAIM_TTL) -> ImageClaim:
    """Claim one given image (opened from the dataset grid); refuses while someone else's claim is live."""
    now = timezone.now()
    with transaction.atomic():
        Image.objects.select_for_update().filter(pk=image.pk).first()
        claim = ImageClaim.objects.select_for_update().filter(image=image).first()
        if claim is not None and claim.user_id != user.pk and claim.expires_at > now:
            raise Conflict(
                f"{claim.user.get_username()} is labeling this image.",
                code="claimed",
                details={"user": claim.user.get_username(), "expires_at": claim.expires_at.isoformat()},
            )
        if claim is None:
            claim = ImageClaim.objects.create(image=image, user=user, claimed_at=now, expires_at=now + ttl)
        else:
            if claim.user_id != user.pk or claim.expires_at <= now:
                claim.claimed_at = now
            claim.user, claim.expires_at = user, now + ttl
            claim.save(update_fields=["user", "claimed_at", "expires_at"])
        _broadcast_claim(image, user)
    return claim


def image_claim_renew(*, image: Image, user, ttl: timedelta = CLAIM_TTL) -> ImageClaim:
    """Heartbeat of an open labeling page: extend the claim; an expired claim nobody took is taken back."""
    now = timezone.now()
    with transaction.atomic():
        claim = ImageClaim.objects.select_for_update().filter(image=image).first()
        if claim is None:
            try:
                with transaction.atomic():
                    return ImageClaim.objects.create(image=image, user=user, claimed_at=now, expires_at=now + ttl)
            except IntegrityError:
                claim = ImageClaim.objects.select_for_update().get(image=image)
        if claim.user_id != user.pk:
            if claim.expires_at > now:
                raise Conflict(
                    f"{claim.user.get_username()} has taken this image over.",
                    code="claim_lost",
                    details={"user": claim.user.get_username()},
                )
            claim.user, claim.claimed_at = user, now
        claim.expires_at = now + ttl
        claim.save(update_fields=["user", "claimed_at", "expires_at"])
    return claim


def image_claim_release(*, image: Image, user) -> bool:
    """Give an image back to the queue (page closed); only one's own claim. True when a claim was removed."""
    with transaction.atomic():
        deleted, _ = ImageClaim.objects.filter(image=image, user=user).delete()
        if deleted:
            broadcast(f"dataset.{image.dataset.slug}", "claim", {"image_id": image.pk, "user": None})
            _broadcast_queue(image.dataset)
    return bool(deleted)


def _claim_duration_s(image: Image, user, now) -> float | None:
    claim = ImageClaim.objects.filter(image=image, user=user).first()
    if claim is None:
        return None
    # The page claims the next image ahead of time: time on this image starts when the previous one was done.
    previous = LabelingEvent.objects.filter(user=user).order_by("-created_at").values_list("created_at", flat=True)
    start = max(claim.claimed_at, previous[0]) if previous else claim.claimed_at
    return min(MAX_COUNTED_DURATION_S, max(0.0, (now - start).total_seconds()))


# --- submit, skip, drafts -------------------------------------------------------------------------------------------


def annotation_submit(*, image: Image, user, boxes_api: list, version: int) -> Annotation:
    """Save the boxes a person sends (API form) as the image's annotation: submitted for review, or approved at once
    when the dataset does not require review. A stale ``version`` is a 409 ``stale_version``; nothing is saved on
    bad input. Clears the person's draft and claim and records the submission for statistics."""
    dataset = image.dataset
    now = timezone.now()
    with transaction.atomic():
        boxes = boxes_from_api(dataset, boxes_api)
        status = Image.Status.SUBMITTED if dataset.review_required else Image.Status.APPROVED
        annotation = annotation_set(image=image, boxes=boxes, user=user, expected_version=version, status=status)
        duration = _claim_duration_s(image, user, now)
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
        _broadcast_queue(dataset)
    return annotation


def annotation_skip(*, image: Image, user) -> None:
    """Skip an image: release the claim; it leaves this person's queue (others still get it)."""
    now = timezone.now()
    with transaction.atomic():
        duration = _claim_duration_s(image, user, now)
        ImageClaim.objects.filter(image=image, user=user).delete()
        LabelingEvent.objects.create(
            dataset=image.dataset, image=image, user=user, kind=LabelingEvent.Kind.SKIP, duration_s=duration
        )
        broadcast(f"dataset.{image.dataset.slug}", "claim", {"image_id": image.pk, "user": None})
        _broadcast_queue(image.dataset)


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


# --- review ---------------------------------------------------------------------------------------------------------


def image_review(*, image: Image, reviewer, decision: str, comment: str = "") -> ReviewEvent:
    """Approve or reject a submitted annotation. Approved images can enter a frozen version; a rejected one goes back
    to its annotator's queue with the comment."""
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
        locked = Image.objects.select_for_update().get(pk=image.pk)
        if locked.status != Image.Status.SUBMITTED:
            raise Conflict(
                f"Only submitted images can be reviewed; this one is {locked.status}.",
                code="not_submitted",
                details={"status": locked.status},
            )
        annotation = Annotation.objects.filter(image=locked).first()
        new_status = Image.Status.APPROVED if decision == ReviewEvent.Decision.APPROVE else Image.Status.REJECTED
        Image.objects.filter(pk=locked.pk).update(status=new_status)
        image.status = new_status
        event = ReviewEvent.objects.create(
            image=locked,
            reviewer=reviewer,
            annotator=annotation.updated_by if annotation else None,
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
        _broadcast_queue(locked.dataset)
    return event


def latest_rejection(image: Image) -> ReviewEvent | None:
    """The rejection whose comment the annotator should see (only while the image is still rejected)."""
    if image.status != Image.Status.REJECTED:
        return None
    return image.review_events.filter(decision=ReviewEvent.Decision.REJECT).select_related("reviewer").first()


# --- predictions ----------------------------------------------------------------------------------------------------


def prediction_certainty(confidences: list[float]) -> float:
    """How sure the model is about the image: its least sure box's max(c, 1 - c) (0.5 = coin toss); 1 with no box
    above the low storage threshold (the model is confident there is nothing)."""
    if not confidences:
        return 1.0
    return float(min(max(c, 1.0 - c) for c in confidences))


def predictions_store(
    *,
    image: Image,
    boxes: list[dict],
    source: str,
    model_id: int | None = None,
    model_sha256: str = "",
) -> Prediction:
    """Store a model's boxes for an image (``{"class_id"|"label", "box", "confidence"}``); invalid boxes (unknown
    label, outside the image, empty) are dropped, since predictions are suggestions, not labels."""
    classes = list(image.dataset.classes)
    clean = []
    for item in boxes or []:
        if not isinstance(item, dict):
            continue
        class_id = item.get("class_id")
        if class_id is None and item.get("label") in classes:
            class_id = classes.index(item["label"])
        box, conf = item.get("box"), item.get("confidence", 1.0)
        if not isinstance(class_id, int) or not 0 <= class_id < len(classes):
            continue
        try:
            x, y, w, h = (float(v) for v in box)
            conf = float(conf)
        except (TypeError, ValueError):
            continue
        # Clip to the image: a robot's detector may run on a resized frame and overshoot by a pixel.
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(image.width), x + w), min(float(image.height), y + h)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        clean.append(
            {
                "class_id": class_id,
                "box": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "confidence": round(min(1.0, max(0.0, conf)), 4),
            }
        )
    with transaction.atomic():
        prediction, _ = Prediction.objects.update_or_create(
            image=image,
            defaults={
                "source": source,
                "model_id": model_id,
                "model_sha256": model_sha256 or "",
                "boxes": clean,
                "certainty": prediction_certainty([b["confidence"] for b in clean]),
            },
        )
    return prediction


def predictions_from_meta(*, image: Image) -> Prediction | None:
    """A robot's own detections sent in ``Image.meta["predictions"]`` become the image's prediction."""
    meta = image.meta if isinstance(image.meta, dict) else {}
    predictions = meta.get("predictions")
    if not isinstance(predictions, list):
        return None
    model_id = meta.get("model_id")
    return predictions_store(
        image=image,
        boxes=predictions,
        source=Prediction.Source.ROBOT,
        model_id=model_id if isinstance(model_id, int) else None,
        model_sha256=str(meta.get("model_sha256", ""))[:64],
    )


def prelabel_model_set(*, dataset: Dataset, model_id: int, storage_path: str, sha256: str) -> PrelabelModel:
    """Remember which model pre-labels this dataset (called on every production promotion)."""
    with transaction.atomic():
        prelabel, _ = PrelabelModel.objects.update_or_create(
            dataset=dataset, defaults={"model_id": model_id, "storage_path": storage_path, "sha256": sha256}
        )
    return prelabel


# --- queue counts and live updates ----------------------------------------------------------------------------------


def queue_counts(dataset: Dataset) -> dict:
    """Counts per labeling status plus live claims: what the labeling and dataset pages show."""
    now = timezone.now()
    rows = Image.objects.filter(dataset=dataset).values("status").annotate(n=Count("id"))
    by_status = {status: 0 for status in Image.Status.values}
    for row in rows:
        by_status[row["status"]] = row["n"]
    claimed = ImageClaim.objects.filter(image__dataset=dataset, expires_at__gt=now).count()
    to_label = by_status[Image.Status.UNLABELED] + by_status[Image.Status.IN_PROGRESS] + by_status["rejected"]
    return {
        "statuses": by_status,
        "to_label": to_label,
        "to_review": by_status[Image.Status.SUBMITTED],
        "claimed": claimed,
        "total": sum(by_status.values()),
    }


def active_claims(dataset: Dataset) -> list[dict]:
    """Who is working on what right now."""
    now = timezone.now()
    claims = (
        ImageClaim.objects.filter(image__dataset=dataset, expires_at__gt=now)
        .select_related("user")
        .order_by("claimed_at")
    )
    return [
        {"image_id": c.image_id, "user": c.user.get_username(), "expires_at": c.expires_at.isoformat()} for c in claims
    ]


def _broadcast_claim(image: Image, user) -> None:
    data = {"image_id": image.pk, "user": user.get_username()}
    broadcast(f"dataset.{image.dataset.slug}", "claim", data)
    broadcast(f"image.{image.pk}", "claim", data)
    _broadcast_queue(image.dataset)


def _broadcast_queue(dataset: Dataset) -> None:
    # Counted after commit, so the numbers include this transaction's change.
    transaction.on_commit(lambda: _send_queue(dataset))


def _send_queue(dataset: Dataset) -> None:
    from vectormlops.events import broadcast_now

    try:
        counts = queue_counts(dataset)
    except Exception:  # noqa: BLE001 - live updates are best effort
        return
    broadcast_now(f"dataset.{dataset.slug}", "queue", counts)
