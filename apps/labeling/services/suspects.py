"""Suspect labels: store what a trained model doubts about approved images, and a reviewer's verdict on it."""

from django.db import transaction
from django.utils import timezone

from apps.datasets.models import Annotation, Image
from apps.labeling.models import SuspectLabel
from apps.labeling.suspects import CONFIDENT, image_doubt, label_doubts
from vectormlops.errors import Conflict, ValidationFailed
from vectormlops.events import broadcast


def suspects_store(
    *, image: Image, model_id: int, predictions: list[dict], confident: float = CONFIDENT
) -> SuspectLabel | None:
    """Score an approved image's labels against ``predictions`` ({class_id, box, confidence}) of model
    ``model_id``; ``confident`` is this model's bar (apps.labeling.suspects.calibrated_confidence). A verdict
    already given on the same annotation version is kept (the reviewer said these labels are right, or fixed
    them); new boxes reopen the question. Returns None for an image not approved."""
    with transaction.atomic():
        annotation = Annotation.objects.filter(image=image).first()
        if image.status != Image.Status.APPROVED or annotation is None:
            SuspectLabel.objects.filter(image=image).delete()
            return None
        classes = list(image.dataset.classes)
        reasons = label_doubts(annotation.boxes, predictions, classes, confident)
        shown = [
            {"label": classes[p["class_id"]], "box": p["box"], "confidence": round(p["confidence"], 3)}
            for p in predictions
            if p["confidence"] >= 0.25 and 0 <= p["class_id"] < len(classes)
        ]
        existing = SuspectLabel.objects.select_for_update().filter(image=image).first()
        keep_verdict = existing is not None and existing.annotation_version == annotation.version
        suspect, _ = SuspectLabel.objects.update_or_create(
            image=image,
            defaults={
                "dataset": image.dataset,
                "model_id": model_id,
                "annotation_version": annotation.version,
                "score": image_doubt(reasons),
                "reasons": reasons,
                "predictions": shown,
                **({} if keep_verdict else {"verdict": "", "verdict_by": None, "verdict_at": None}),
            },
        )
    return suspect


def suspect_verdict(*, image: Image, reviewer, verdict: str) -> SuspectLabel:
    """A reviewer's answer to a suspect image: ``correct`` (the labels stand) or ``fixed`` (they were corrected).
    Remembered for this annotation version: the next evaluation does not ask again unless the boxes change."""
    if verdict not in (SuspectLabel.Verdict.CORRECT, SuspectLabel.Verdict.FIXED):
        raise ValidationFailed("verdict must be correct or fixed.", details={"verdict": ["Expected correct or fixed."]})
    with transaction.atomic():
        suspect = SuspectLabel.objects.select_for_update().filter(image=image).first()
        if suspect is None:
            raise Conflict("No model doubts this image's labels.", code="not_suspect")
        annotation = Annotation.objects.filter(image=image).first()
        suspect.verdict, suspect.verdict_by, suspect.verdict_at = verdict, reviewer, timezone.now()
        if annotation is not None:
            suspect.annotation_version = annotation.version  # the verdict is about the boxes as they are now
        suspect.save(update_fields=["verdict", "verdict_by", "verdict_at", "annotation_version"])
        broadcast(f"dataset.{image.dataset.slug}", "suspect", {"image_id": image.pk, "verdict": verdict})
    return suspect
