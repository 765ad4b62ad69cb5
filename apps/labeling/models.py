"""Labeling: the workflow around an image's boxes (claims, drafts, review, pre-labels, statistics).

The boxes themselves (``Annotation``) and the labeling status (``Image.status``) live in datasets; this app only
decides who labels what, in which order, and records what happened.
"""

from django.conf import settings
from django.db import models

from apps.datasets.models import Dataset, Image


class ImageClaim(models.Model):
    """One annotator's exclusive, expiring hold on an image while it is open on their labeling page."""

    image = models.OneToOneField(Image, on_delete=models.CASCADE, primary_key=True, related_name="claim")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="image_claims")
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"])]

    def __str__(self):
        return f"image {self.image_id} claimed by {self.user_id}"


class Draft(models.Model):
    """Autosaved, not yet submitted boxes of one person on one image (API form), so a closed tab loses nothing."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="drafts")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    boxes = models.JSONField(default=list, help_text='[{"label": "vector", "box": [x, y, w, h]}] in pixels')
    base_version = models.PositiveIntegerField(default=0, help_text="Annotation version the draft started from.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "user"], name="draft_unique_image_user")]

    def __str__(self):
        return f"draft of image {self.image_id} by {self.user_id}"


class ReviewEvent(models.Model):
    """A reviewer's decision on a submitted annotation; a rejection's comment is shown to the annotator."""

    class Decision(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="review_events")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who submitted the reviewed boxes (for the rejection rate).",
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    annotation_version = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["image", "-created_at"])]

    def __str__(self):
        return f"{self.decision} image {self.image_id} v{self.annotation_version}"


class LabelingEvent(models.Model):
    """One submission or skip by an annotator, with its box count and time spent (per-annotator statistics)."""

    class Kind(models.TextChoices):
        SUBMIT = "submit"
        SKIP = "skip"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="labeling_events")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labeling_events")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    box_count = models.PositiveIntegerField(default=0)
    duration_s = models.FloatField(null=True, blank=True, help_text="From claim to submit/skip, capped.")
    version = models.PositiveIntegerField(null=True, blank=True, help_text="Annotation version written.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["dataset", "user", "created_at"]), models.Index(fields=["user", "kind"])]

    def __str__(self):
        return f"{self.kind} image {self.image_id} by {self.user_id}"


class Prediction(models.Model):
    """A model's boxes for one image, shown as suggestions; its certainty orders the labeling queue."""

    class Source(models.TextChoices):
        SERVER = "server"  # our pre-label task ran the production model
        ROBOT = "robot"  # the robot's own detections, sent in Image.meta["predictions"]

    image = models.OneToOneField(Image, on_delete=models.CASCADE, primary_key=True, related_name="prediction")
    source = models.CharField(max_length=8, choices=Source.choices)
    model_id = models.IntegerField(null=True, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True)
    boxes = models.JSONField(default=list, help_text='[{"class_id": 0, "box": [x, y, w, h], "confidence": 0.9}]')
    certainty = models.FloatField(
        db_index=True, help_text="0.5 (a coin toss) .. 1 (sure): the least sure box's max(conf, 1 - conf)."
    )
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"prediction for image {self.image_id} ({self.source}, certainty {self.certainty:.2f})"


class PrelabelModel(models.Model):
    """The model that pre-labels a dataset's new images; deployments sets it on every production promotion."""

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, primary_key=True, related_name="prelabel_model")
    model_id = models.IntegerField()
    storage_path = models.CharField(max_length=255, help_text="The .pt artifact in default storage.")
    sha256 = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.dataset_id}: model {self.model_id}"


class SuspectLabel(models.Model):
    """An approved image whose labels a trained model doubts (apps.labeling.suspects scores it), with the reason
    per box; a reviewer's verdict is kept until the boxes change (a new annotation version)."""

    class Verdict(models.TextChoices):
        OPEN = ""
        CORRECT = "correct"  # the labels were right; the model was wrong
        FIXED = "fixed"  # the reviewer corrected the boxes

    image = models.OneToOneField(Image, on_delete=models.CASCADE, primary_key=True, related_name="suspect")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    model_id = models.IntegerField()
    annotation_version = models.PositiveIntegerField(help_text="The labels scored; a verdict holds for them only.")
    score = models.FloatField(help_text="0 (model agrees) .. 1: the chance at least one box is wrong.")
    reasons = models.JSONField(default=list, help_text="[{kind, label, box, predicted, confidence, iou, score}]")
    predictions = models.JSONField(default=list, help_text="The model's confident boxes (API form), shown beside.")
    verdict = models.CharField(max_length=8, choices=Verdict.choices, default=Verdict.OPEN, blank=True)
    verdict_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verdict_at = models.DateTimeField(null=True, blank=True)
    scored_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["dataset", "verdict", "-score"])]

    def __str__(self):
        return f"suspect image {self.image_id} ({self.score:.2f}, {self.verdict or 'open'})"
