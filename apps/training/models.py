"""Training: runs of ultralytics YOLO on frozen dataset versions, and the models they produce."""

from django.conf import settings
from django.db import models


class TrainingRun(models.Model):
    """One training job: what it trained on, how, what happened, and what came out."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        PREPARING = "preparing"
        TRAINING = "training"
        EVALUATING = "evaluating"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.PREPARING, Status.TRAINING, Status.EVALUATING)
    PRODUCTION_BASE = "production"  # the base that fine-tunes the model live in production

    class Trigger(models.TextChoices):
        WEB = "web"
        API = "api"
        ADMIN = "admin"
        SCHEDULE = "schedule"

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="training_runs")
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="training_runs"
    )
    base = models.CharField(max_length=255, help_text="An ultralytics .yaml, a weights path, or 'production'")
    base_model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="fine_tuned_runs"
    )
    registered_base = models.ForeignKey(
        "training.BaseModel", null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    epochs = models.PositiveIntegerField(default=30)
    imgsz = models.PositiveIntegerField(default=320)
    batch = models.PositiveIntegerField(default=16)
    patience = models.PositiveIntegerField(default=50)
    seed = models.IntegerField(default=0)
    device = models.CharField(max_length=32, default="auto", help_text="auto = CUDA when present, else CPU")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.WEB)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    final_metrics = models.JSONField(default=dict, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker_host = models.CharField(max_length=255, blank=True)
    code_revision = models.CharField(max_length=64, blank=True)
    package_versions = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["dataset", "status"])]

    def __str__(self):
        return f"run {self.pk} ({self.dataset_id}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class BaseModel(models.Model):
    """A weights file an ML engineer registered as a starting point for training (e.g. a pretrained checkpoint)."""

    class Status(models.TextChoices):
        CHECKING = "checking"  # stored; a training worker still has to load it safely
        READY = "ready"
        REJECTED = "rejected"

    PREFIX = "registered:"  # a run's ``base`` names a registered base model as registered:<id>

    name = models.CharField(max_length=100, unique=True)
    storage_path = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, unique=True)
    size = models.PositiveBigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CHECKING)
    error = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="What the safe load found: task, classes, layers")
    note = models.CharField(max_length=200, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def base_value(self) -> str:
        return f"{self.PREFIX}{self.pk}"


class EpochMetric(models.Model):
    """Metrics of one finished epoch (written once per epoch, never per batch)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="epoch_metrics")
    epoch = models.PositiveIntegerField()
    losses = models.JSONField(default=dict, help_text='{"box": .., "cls": .., "dfl": ..}')
    precision = models.FloatField(null=True)
    recall = models.FloatField(null=True)
    map50 = models.FloatField(null=True)
    map50_95 = models.FloatField(null=True)
    seconds = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "epoch"]
        constraints = [models.UniqueConstraint(fields=["run", "epoch"], name="epoch_metric_unique")]


class ModelVersion(models.Model):
    """A trained model: numbered per dataset, with its artifacts (ONNX for robots, .pt for fine-tuning)."""

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="models")
    number = models.PositiveIntegerField()
    run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    classes = models.JSONField()
    imgsz = models.PositiveIntegerField()
    conf_threshold = models.FloatField(default=0.25)
    metrics = models.JSONField(default=dict, blank=True, help_text="Validation metrics at the end of training")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="model_version_unique_number")]

    def __str__(self):
        return f"{self.dataset.slug} model v{self.number}"


class ModelArtifact(models.Model):
    """One stored file of a model, with the checksum robots verify."""

    class Format(models.TextChoices):
        ONNX = "onnx"
        PT = "pt"

    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="artifacts")
    format = models.CharField(max_length=8, choices=Format.choices)
    storage_path = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "format"], name="artifact_unique_format")]


class RetrainPolicy(models.Model):
    """When Celery beat retrains a dataset on its own, and with which hyperparameters."""

    dataset = models.OneToOneField("datasets.Dataset", on_delete=models.CASCADE, related_name="retrain_policy")
    enabled = models.BooleanField(default=True)
    min_new_approved_images = models.PositiveIntegerField(
        default=50, help_text="Retrain once this many approved images are not in the last run's version."
    )
    max_model_age_days = models.PositiveIntegerField(
        default=7, help_text="Retrain when the production model and the last run are older than this."
    )
    epochs = models.PositiveIntegerField(default=30)
    imgsz = models.PositiveIntegerField(default=320)
    batch = models.PositiveIntegerField(default=16)
    base = models.CharField(
        max_length=255, blank=True, help_text="Blank: fine-tune the production model when one exists, else yolov8n.yaml"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retrain policies"

    def __str__(self):
        return f"retrain policy of {self.dataset}"
