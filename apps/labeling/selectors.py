"""Reads of the labeling app: what the labeling and review pages load for one image, queues, statistics."""

from collections import defaultdict

from django.db.models import Count, Q, Sum
from django.urls import reverse
from django.utils import timezone

from apps.datasets.boxes import boxes_to_api
from apps.datasets.models import Annotation, Dataset, Image
from apps.labeling.models import Draft, ImageClaim, LabelingEvent, Prediction, ReviewEvent, SuspectLabel
from vectormlops.permissions import REVIEWER, has_role

# Suggestions shown on the page; lower-confidence boxes are stored only to measure the model's certainty.
SUGGESTION_MIN_CONFIDENCE = 0.25


def image_url(image: Image) -> str:
    """The permission-checked URL of the image file (served by datasets)."""
    return reverse("datasets:image_file", args=[image.pk])


def image_bundle(*, image: Image, user) -> dict:
    """Everything the labeling page needs to show one image: size, URL, boxes with version, the person's draft,
    model suggestions, the last rejection comment and who holds the claim."""
    dataset = image.dataset
    annotation = Annotation.objects.filter(image=image).select_related("updated_by").first()
    draft = Draft.objects.filter(image=image, user=user).first()
    prediction = Prediction.objects.filter(image=image).first()
    claim = ImageClaim.objects.filter(image=image, expires_at__gt=timezone.now()).select_related("user").first()
    rejection = latest_rejection(image)
    suggestions = None
    if prediction is not None:
        names = dataset.classes
        suggestions = {
            "source": prediction.source,
            "model_id": prediction.model_id,
            "certainty": prediction.certainty,
            "boxes": [
                {"label": names[b["class_id"]], "box": b["box"], "confidence": b["confidence"]}
                for b in prediction.boxes
                if b["class_id"] < len(names) and b["confidence"] >= SUGGESTION_MIN_CONFIDENCE
            ],
        }
    return {
        "id": image.pk,
        "dataset": dataset.slug,
        "width": image.width,
        "height": image.height,
        "url": image_url(image),
        "status": image.status,
        "source": image.source,
        "robot_serial": image.robot_serial,
        "uploaded_at": image.uploaded_at.isoformat(),
        "annotation": {
            "version": annotation.version if annotation else 0,
            "boxes": boxes_to_api(dataset, annotation.boxes) if annotation else [],
            "updated_by": annotation.updated_by.get_username() if annotation and annotation.updated_by else None,
        },
        "draft": (
            {"boxes": draft.boxes, "base_version": draft.base_version, "updated_at": draft.updated_at.isoformat()}
            if draft
            else None
        ),
        "suggestions": suggestions,
        "rejection": (
            {
                "comment": rejection.comment,
                "reviewer": rejection.reviewer.get_username() if rejection.reviewer else None,
                "created_at": rejection.created_at.isoformat(),
            }
            if rejection
            else None
        ),
        "claim": (
            {
                "user": claim.user.get_username(),
                "mine": claim.user_id == user.pk,
                "expires_at": claim.expires_at.isoformat(),
            }
            if claim
            else None
        ),
        # Why this person may not change the boxes (None: they may): approved images are the reviewers'.
        "read_only": (
            "This image is approved: it is read-only for annotators. A reviewer can reopen it."
            if image.status == Image.Status.APPROVED and not has_role(user, REVIEWER)
            else None
        ),
        "suspect": suspect_of(image),
    }


def suspect_of(image: Image) -> dict | None:
    """What the model doubts about this image's labels (None when nothing is recorded)."""
    suspect = SuspectLabel.objects.filter(image=image).select_related("verdict_by").first()
    if suspect is None:
        return None
    return {
        "score": suspect.score,
        "model_id": suspect.model_id,
        "reasons": suspect.reasons,
        "predictions": suspect.predictions,
        "verdict": suspect.verdict,
        "verdict_by": suspect.verdict_by.get_username() if suspect.verdict_by else None,
    }


def suspect_queue(dataset: Dataset, min_score: float = 0.2):
    """Approved images a model doubts, worst first, without a reviewer's verdict on their current boxes."""
    return (
        SuspectLabel.objects.filter(dataset=dataset, verdict="", score__gte=min_score, image__status="approved")
        .select_related("image")
        .order_by("-score", "image_id")
    )


def review_queue(dataset: Dataset, *, annotator: str = "", source: str = ""):
    """Submitted images, the longest-waiting first; optionally only one annotator's or one source's."""
    qs = Image.objects.filter(dataset=dataset, status=Image.Status.SUBMITTED)
    if annotator:
        qs = qs.filter(annotation__updated_by__username=annotator)
    if source:
        qs = qs.filter(source=source)
    return qs.select_related("annotation").order_by("annotation__updated_at", "id")


def review_queue_state(dataset: Dataset, *, annotator: str = "", source: str = "", limit: int = 500) -> dict:
    """What the review page shows of its (filtered) queue: how many wait, the ids "approve all shown" approves,
    and how many suspect labels wait for a verdict. The page fetches it again after its live stream reconnects."""
    queue = review_queue(dataset, annotator=annotator, source=source)
    return {
        "waiting": queue.count(),
        "waiting_ids": list(queue.values_list("id", flat=True)[:limit]),
        "suspects": suspect_queue(dataset).count(),
    }


def review_annotators(dataset: Dataset) -> list[str]:
    """Who submitted the images waiting for review (the review page's filter)."""
    return sorted(
        set(
            Annotation.objects.filter(image__dataset=dataset, image__status=Image.Status.SUBMITTED)
            .exclude(updated_by=None)
            .values_list("updated_by__username", flat=True)
        )
    )


def queue_empty_reason(*, dataset: Dataset, user) -> dict:
    """Why the queue hands this person nothing: images they skipped (and when the first returns), images others
    are labeling, images waiting for review."""
    from apps.labeling.services.claims import SKIP_RETURNS_AFTER  # the rule lives with the queue

    now = timezone.now()
    skips = LabelingEvent.objects.filter(
        dataset=dataset,
        user=user,
        kind=LabelingEvent.Kind.SKIP,
        created_at__gt=now - SKIP_RETURNS_AFTER,
        image__status__in=(Image.Status.UNLABELED, Image.Status.IN_PROGRESS, Image.Status.REJECTED),
    )
    first = skips.order_by("created_at").values_list("created_at", flat=True).first()
    counts = queue_counts(dataset)
    return {
        "skipped": skips.values("image_id").distinct().count(),
        "skipped_return_at": (first + SKIP_RETURNS_AFTER).isoformat() if first else None,
        "claimed_by_others": ImageClaim.objects.filter(image__dataset=dataset, expires_at__gt=now)
        .exclude(user=user)
        .count(),
        "to_review": counts["to_review"],
    }


def annotator_stats(*, dataset: Dataset | None = None, since=None) -> list[dict]:
    """Per annotator: images and boxes submitted, per hour of labeling time (claim to submit), skips, reviews of
    their work and the rejection rate."""
    events = LabelingEvent.objects.all()
    reviews = ReviewEvent.objects.filter(annotator__isnull=False)
    if dataset is not None:
        events = events.filter(dataset=dataset)
        reviews = reviews.filter(image__dataset=dataset)
    if since is not None:
        events = events.filter(created_at__gte=since)
        reviews = reviews.filter(created_at__gte=since)
    rows: dict = defaultdict(
        lambda: {"images": 0, "boxes": 0, "skips": 0, "seconds": 0.0, "reviewed": 0, "rejected": 0}
    )
    per_user = events.values("user__username").annotate(
        images=Count("id", filter=Q(kind=LabelingEvent.Kind.SUBMIT)),
        boxes=Sum("box_count", filter=Q(kind=LabelingEvent.Kind.SUBMIT)),
        skips=Count("id", filter=Q(kind=LabelingEvent.Kind.SKIP)),
        seconds=Sum("duration_s"),
    )
    for row in per_user:
        entry = rows[row["user__username"]]
        entry.update(images=row["images"], boxes=row["boxes"] or 0, skips=row["skips"], seconds=row["seconds"] or 0.0)
    for row in reviews.values("annotator__username").annotate(
        reviewed=Count("id"), rejected=Count("id", filter=Q(decision=ReviewEvent.Decision.REJECT))
    ):
        entry = rows[row["annotator__username"]]
        entry.update(reviewed=row["reviewed"], rejected=row["rejected"])
    result = []
    for username, entry in sorted(rows.items()):
        hours = entry["seconds"] / 3600.0
        result.append(
            {
                "user": username,
                **entry,
                "hours": round(hours, 3),
                "images_per_hour": round(entry["images"] / hours, 1) if hours > 0 else None,
                "boxes_per_hour": round(entry["boxes"] / hours, 1) if hours > 0 else None,
                "rejection_rate": round(entry["rejected"] / entry["reviewed"], 3) if entry["reviewed"] else None,
            }
        )
    return result


def latest_rejection(image: Image) -> ReviewEvent | None:
    """The rejection whose comment the annotator should see (only while the image is still rejected)."""
    if image.status != Image.Status.REJECTED:
        return None
    return image.review_events.filter(decision=ReviewEvent.Decision.REJECT).select_related("reviewer").first()


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


def datasets_with_queue_counts() -> list[dict]:
    """Every dataset with its queue counts: the labeling and review home pages."""
    return [
        {"dataset": dataset, "counts": queue_counts(dataset), "suspects": suspect_queue(dataset).count()}
        for dataset in Dataset.objects.all()
    ]
