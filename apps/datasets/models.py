"""Datasets: what a detection task is made of. Images are content-addressed; versions are frozen snapshots.

Box convention (everywhere in the database and API): pixels of the original image, ``[x, y, width, height]``,
origin top-left. In the database a box names its class by index into ``Dataset.classes`` so a class can be
renamed without touching any box: ``{"class_id": 0, "box": [x, y, w, h]}``.
"""

from django.conf import settings
from django.db import models


def default_split_ratios():
    return {"train": 0.8, "val": 0.1, "test": 0.1}


class Dataset(models.Model):
    """A detection task: a named set of images and an ordered list of class names."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    classes = models.JSONField(default=list, help_text="Ordered class names; boxes refer to them by index.")
    split_ratios = models.JSONField(default=default_split_ratios)
    review_required = models.BooleanField(default=True, help_text="Submitted labels need a reviewer's approval.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class Image(models.Model):
    """One camera image, stored once per dataset under its sha256, with its statistics and labeling status."""

    class Source(models.TextChoices):
        CAMERA = "camera"
        FEEDBACK = "feedback"
        LOW_CONFIDENCE = "low_confidence"
        SHADOW_DISAGREEMENT = "shadow_disagreement"  # a frame where a robot's shadow model disagreed with its model
        UPLOAD = "upload"
        IMPORT = "import"

    class Split(models.TextChoices):
        TRAIN = "train"
        VAL = "val"
        TEST = "test"

    class Status(models.TextChoices):
        UNLABELED = "unlabeled"
        IN_PROGRESS = "in_progress"
        SUBMITTED = "submitted"
        APPROVED = "approved"
        REJECTED = "rejected"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    sha256 = models.CharField(max_length=64)
    storage_path = models.CharField(max_length=255, help_text="images/ab/cd/<sha256>.<ext> in default storage")
    thumbnail_path = models.CharField(max_length=255, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)  # JPEG or PNG
    size_bytes = models.PositiveBigIntegerField()
    captured_at = models.DateTimeField(null=True, blank=True)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=24, choices=Source.choices, default=Source.UPLOAD)
    robot_serial = models.CharField(max_length=64, blank=True, default="", help_text="Uploading robot, if any.")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    meta = models.JSONField(default=dict, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices)
    split_pinned = models.BooleanField(default=False, help_text="An admin fixed the split (curated sets).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNLABELED)
    labeling_priority = models.SmallIntegerField(
        default=0, help_text="Higher is labeled sooner (e.g. a drift sample queued by monitoring)."
    )
    # Statistics, computed once at ingestion (drift detection, slices, near-duplicate search).
    brightness = models.FloatField(help_text="Mean luma, 0..1")
    contrast = models.FloatField(help_text="Std of luma, 0..1")
    sharpness = models.FloatField(help_text="Variance of the Laplacian of luma")
    color_histogram = models.JSONField(default=list, help_text="Normalised 8-bin histogram per RGB channel")
    phash = models.CharField(max_length=16, db_index=True, help_text="Perceptual hash (hex)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="image_unique_sha256_per_dataset")]
        indexes = [
            models.Index(fields=["dataset", "status", "id"]),
            models.Index(fields=["dataset", "split", "id"]),
            models.Index(fields=["dataset", "source", "id"]),
            models.Index(fields=["dataset", "robot_serial", "id"]),
            models.Index(fields=["dataset", "uploaded_at"]),
            # The unfiltered grid and API list: newest first within a dataset, read by keyset (id < cursor).
            models.Index(fields=["dataset", "id"], name="image_dataset_id_idx"),
        ]

    def __str__(self):
        return f"{self.dataset_id}:{self.sha256[:12]}"


class Annotation(models.Model):
    """The current boxes of one image. ``version`` grows by one on every save (optimistic concurrency).

    It lives in datasets, not labeling, because import, freeze and export (all datasets' work) read and write it
    and an app never imports a later one; labeling owns the workflow around it (claims, review, pre-labels)."""

    image = models.OneToOneField(Image, on_delete=models.CASCADE, primary_key=True, related_name="annotation")
    version = models.PositiveIntegerField(default=0)
    boxes = models.JSONField(default=list, help_text='[{"class_id": 0, "box": [x, y, w, h]}] in pixels')
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self):
        return f"annotation of image {self.image_id} v{self.version}"


class DatasetVersion(models.Model):
    """A frozen snapshot of a dataset's approved labels; later edits never change it."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    classes = models.JSONField(help_text="Class names at freezing time")
    counts = models.JSONField(default=dict, help_text='{"images": {"train": n, ...}, "boxes": {"vector": n, ...}}')
    image_count = models.PositiveIntegerField(default=0)
    manifest_sha256 = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="version_unique_number")]
        ordering = ["dataset", "-number"]

    def __str__(self):
        return f"{self.dataset.slug} v{self.number}"


class VersionItem(models.Model):
    """One image of a frozen version, with the split and boxes it had at freezing time."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="version_items")
    split = models.CharField(max_length=8, choices=Image.Split.choices)
    boxes = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "image"], name="version_item_unique_image")]
        indexes = [models.Index(fields=["version", "split"])]


class ImportJob(models.Model):
    """One import of a YOLO/COCO archive into a dataset; the Celery task updates it and the page watches it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="import_jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    upload_name = models.CharField(max_length=255, help_text="The uploaded archive in default storage")
    original_name = models.CharField(max_length=255, blank=True)
    approve = models.BooleanField(default=False, help_text="Imported boxes arrive approved, not submitted.")
    keep_split = models.BooleanField(default=False, help_text="Pin each image to the split it had in the source.")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the process running it; the sweeper judges by it."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"import {self.pk} into {self.dataset_id} ({self.status})"

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.status == self.Status.SUCCEEDED else 0.0)
