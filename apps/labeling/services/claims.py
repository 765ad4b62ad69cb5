"""The labeling queue and claims: who works on which image, handed out in queue order, never to two people."""

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.utils import timezone

from apps.datasets.models import Dataset, Image
from apps.labeling.models import ImageClaim, LabelingEvent
from apps.labeling.selectors import queue_counts
from vectormlops.errors import Conflict
from vectormlops.events import broadcast, broadcast_now
from vectormlops.permissions import REVIEWER, has_role

CLAIM_TTL = timedelta(minutes=10)
# A skipped image leaves the skipper's queue for this long, then comes back (others get it at once).
SKIP_RETURNS_AFTER = timedelta(minutes=30)
# Time on one image counted in statistics at most (a tab left open over lunch is not labeling time).
MAX_COUNTED_DURATION_S = 600.0
# Robot frames worth labelling first. The frames a live and a shadow model disagree on come before the rest: there
# are few of them (one per upload window) and they decide between the two models, while uncertain frames are many.
PRIORITY_SOURCES = (Image.Source.FEEDBACK, Image.Source.LOW_CONFIDENCE, Image.Source.SHADOW_DISAGREEMENT)
# Images a person may still work on; approved/submitted ones leave the labeling queue.
QUEUE_STATUSES = (Image.Status.UNLABELED, Image.Status.IN_PROGRESS, Image.Status.REJECTED)


def _queue_candidates(*, dataset: Dataset, user, now, exclude_ids) -> Any:
    """Claimable images for ``user`` in queue order (see image_claim_next)."""
    skipped = LabelingEvent.objects.filter(
        user=user, kind=LabelingEvent.Kind.SKIP, dataset=dataset, created_at__gt=now - SKIP_RETURNS_AFTER
    ).values("image_id")
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
            source_rank=Case(
                When(source=Image.Source.SHADOW_DISAGREEMENT, then=Value(0)),
                When(source__in=PRIORITY_SOURCES, then=Value(1)),
                default=Value(2),
            ),
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
    Image.labeling_priority (high first), shadow disagreement frames, robot feedback / low-confidence images, least
    model certainty, oldest."""
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
            claim_broadcast(image, user)
            return image
    return None


def approved_read_only(image: Image, user) -> bool:
    """Approved images are read-only for annotators; a reviewer or ML engineer may change (reopen) them."""
    return image.status == Image.Status.APPROVED and not has_role(user, REVIEWER)


def refuse_if_read_only(image: Image, user) -> None:
    if approved_read_only(image, user):
        raise Conflict(
            "This image is approved and read-only; a reviewer can reopen it.",
            code="approved",
            details={"status": image.status},
        )


def refuse_if_claimed_by_other(image: Image, user, now) -> None:
    """Someone else's live claim is never dropped silently: the caller must take the image over explicitly."""
    claim = ImageClaim.objects.select_for_update(of=("self",)).filter(image=image).select_related("user").first()
    if claim is not None and claim.user_id != user.pk and claim.expires_at > now:
        raise Conflict(
            f"{claim.user.get_username()} is labeling this image.",
            code="claimed",
            details={"user": claim.user.get_username(), "expires_at": claim.expires_at.isoformat()},
        )


def image_claim(*, image: Image, user, take_over: bool = False, ttl: timedelta = CLAIM_TTL) -> ImageClaim:
    """Claim one given image (opened from the dataset grid). Refuses an approved image to an annotator and, unless
    ``take_over`` (the person was asked and agreed), an image someone else is labeling right now."""
    now = timezone.now()
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        refuse_if_read_only(locked, user)
        if not take_over:
            refuse_if_claimed_by_other(locked, user, now)
        claim = ImageClaim.objects.select_for_update().filter(image=image).first()
        if claim is None:
            claim = ImageClaim.objects.create(image=image, user=user, claimed_at=now, expires_at=now + ttl)
        else:
            if claim.user_id != user.pk or claim.expires_at <= now:
                claim.claimed_at = now
            claim.user, claim.expires_at = user, now + ttl
            claim.save(update_fields=["user", "claimed_at", "expires_at"])
        claim_broadcast(image, user)
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
            queue_broadcast(image.dataset)
    return bool(deleted)


def claim_duration_s(image: Image, user, now) -> float | None:
    claim = ImageClaim.objects.filter(image=image, user=user).first()
    if claim is None:
        return None
    # The page claims the next image ahead of time: time on this image starts when the previous one was done.
    previous = LabelingEvent.objects.filter(user=user).order_by("-created_at").values_list("created_at", flat=True)
    start = max(claim.claimed_at, previous[0]) if previous else claim.claimed_at
    return min(MAX_COUNTED_DURATION_S, max(0.0, (now - start).total_seconds()))


def claim_broadcast(image: Image, user) -> None:
    data = {"image_id": image.pk, "user": user.get_username()}
    broadcast(f"dataset.{image.dataset.slug}", "claim", data)
    broadcast(f"image.{image.pk}", "claim", data)
    queue_broadcast(image.dataset)


def queue_broadcast(dataset: Dataset) -> None:
    # Counted after commit, so the numbers include this transaction's change.
    transaction.on_commit(lambda: queue_send(dataset))


def queue_send(dataset: Dataset) -> None:
    try:
        counts = queue_counts(dataset)
    except Exception:  # noqa: BLE001 - live updates are best effort
        return
    broadcast_now(f"dataset.{dataset.slug}", "queue", counts)
