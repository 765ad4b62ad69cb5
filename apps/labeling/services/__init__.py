"""Labeling workflow, by sub-domain: claims and the queue, a person's work (submit, skip, drafts, review) and
predictions. Boxes are written only through ``apps.datasets.services.annotation_set`` (validation, versioning and
row locking live there). The public services are listed here."""

from apps.labeling.services.claims import (
    CLAIM_TTL,
    QUEUE_STATUSES,
    SKIP_RETURNS_AFTER,
    image_claim,
    image_claim_next,
    image_claim_release,
    image_claim_renew,
)
from apps.labeling.services.predictions import (
    prediction_certainty,
    predictions_from_meta,
    predictions_store,
    prelabel_model_set,
)
from apps.labeling.services.submissions import (
    annotation_skip,
    annotation_submit,
    draft_discard,
    draft_save,
    image_review,
    images_approve_batch,
)
from apps.labeling.services.suspects import suspect_verdict, suspects_store

__all__ = [
    "CLAIM_TTL",
    "QUEUE_STATUSES",
    "SKIP_RETURNS_AFTER",
    "annotation_skip",
    "annotation_submit",
    "draft_discard",
    "draft_save",
    "image_claim",
    "image_claim_next",
    "image_claim_release",
    "image_claim_renew",
    "image_review",
    "images_approve_batch",
    "prediction_certainty",
    "predictions_from_meta",
    "predictions_store",
    "prelabel_model_set",
    "suspect_verdict",
    "suspects_store",
]
