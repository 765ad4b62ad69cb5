"""Monitoring: hourly field metrics aggregated from robot telemetry, drift reports, alerts and the canary policy.

Raw ``deployments.TelemetryRecord`` rows are aggregated (in Celery) into ``HourlyMetric`` buckets whose counters
and fixed-bucket histograms merge by addition, so hours, robots and models can be summed exactly; raw rows are
pruned after ``MONITORING_RAW_RETENTION_DAYS``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

# Confidence histogram: 20 equal bins over [0, 1]. Latency histogram: geometric bins (10% wide) from 1 ms to
# about 100 s, so any quantile read from merged hourly buckets is within 10% of the raw one.
# The additive counters of an hourly bucket: aggregation adds to them, reads sum them.
HOURLY_COUNTERS = (
    "frames",
    "frames_with_detection",
    "detections",
    "confidence_count",
    "confidence_sum",
    "latency_count",
    "latency_sum_ms",
    "brightness_count",
    "brightness_sum",
    "feedback_total",
)
CONFIDENCE_BINS = 20
LATENCY_MIN_MS = 1.0
LATENCY_RATIO = 1.1
LATENCY_BINS = 122  # 1.1 ** 121 ≈ 101,000 ms; the last bin takes everything above


class AggregationCursor(models.Model):
    """How far aggregation has read a raw stream (by primary key): each raw row is counted exactly once."""

    name = models.CharField(max_length=64, unique=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.name} @ {self.last_id}"


class HourlyMetric(models.Model):
    """Field metrics of one model on one robot (or the whole fleet when robot is empty) during one UTC hour."""

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    robot = models.ForeignKey(
        "deployments.Robot", null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Empty: fleet"
    )
    hour = models.DateTimeField(help_text="Start of the UTC hour")
    # One text key instead of a unique constraint over nullable columns (NULLs never collide in SQL).
    key = models.CharField(max_length=96, unique=True, editable=False)
    frames = models.PositiveIntegerField(default=0)
    frames_with_detection = models.PositiveIntegerField(default=0)
    detections = models.PositiveIntegerField(default=0, help_text="Sum of detections over all frames")
    confidence_count = models.PositiveIntegerField(default=0, help_text="Frames reporting a top confidence")
    confidence_sum = models.FloatField(default=0.0)
    confidence_hist = models.JSONField(default=list, help_text=f"{CONFIDENCE_BINS} equal bins over [0, 1]")
    latency_count = models.PositiveIntegerField(default=0)
    latency_sum_ms = models.FloatField(default=0.0)
    latency_hist = models.JSONField(default=dict, help_text='Sparse geometric histogram {"bin": count}')
    brightness_count = models.PositiveIntegerField(default=0)
    brightness_sum = models.FloatField(default=0.0)
    feedback = models.JSONField(default=dict, help_text='Feedback uploads by reason {"missed": n, ...}')
    feedback_total = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["dataset", "hour"]
        indexes = [
            models.Index(fields=["dataset", "hour"]),
            models.Index(fields=["robot", "hour"]),
            models.Index(fields=["model", "hour"]),
        ]

    def __str__(self):
        return self.key

    @staticmethod
    def make_key(dataset_id: int, model_id: int | None, robot_id: int | None, hour) -> str:
        return f"{dataset_id}:{model_id or '-'}:{robot_id or '-'}:{hour.strftime('%Y%m%d%H')}"


class ShadowHourly(models.Model):
    """A shadow model beside the live model on the same frames, for one robot (or the fleet when empty) and one
    lighting slice (or all frames when empty) during one UTC hour: additive counters, so any period sums up."""

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Live"
    )
    shadow_model = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+")
    robot = models.ForeignKey(
        "deployments.Robot", null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Empty: fleet"
    )
    slice = models.CharField(max_length=32, blank=True, help_text='Empty: all frames; else e.g. "lighting:dark"')
    hour = models.DateTimeField(help_text="Start of the UTC hour")
    key = models.CharField(max_length=128, unique=True, editable=False)
    frames = models.PositiveIntegerField(default=0)
    agree_frames = models.PositiveIntegerField(default=0, help_text="Frames on which every box of both models matched")
    matched_boxes = models.PositiveIntegerField(default=0)
    live_boxes = models.PositiveIntegerField(default=0)
    shadow_boxes = models.PositiveIntegerField(default=0)
    live_frames_with_detection = models.PositiveIntegerField(default=0)
    shadow_frames_with_detection = models.PositiveIntegerField(default=0)
    live_confidence_count = models.PositiveIntegerField(default=0)
    live_confidence_sum = models.FloatField(default=0.0)
    shadow_confidence_count = models.PositiveIntegerField(default=0)
    shadow_confidence_sum = models.FloatField(default=0.0)
    live_latency_count = models.PositiveIntegerField(default=0)
    live_latency_sum_ms = models.FloatField(default=0.0)
    shadow_latency_count = models.PositiveIntegerField(default=0)
    shadow_latency_sum_ms = models.FloatField(default=0.0)
    skipped = models.PositiveIntegerField(default=0, help_text="Frames the shadow model skipped (latency budget)")
    updated_at = models.DateTimeField(auto_now=True)

    COUNTERS = (
        "frames",
        "agree_frames",
        "matched_boxes",
        "live_boxes",
        "shadow_boxes",
        "live_frames_with_detection",
        "shadow_frames_with_detection",
        "live_confidence_count",
        "live_confidence_sum",
        "shadow_confidence_count",
        "shadow_confidence_sum",
        "live_latency_count",
        "live_latency_sum_ms",
        "shadow_latency_count",
        "shadow_latency_sum_ms",
        "skipped",
    )

    class Meta:
        ordering = ["dataset", "hour"]
        indexes = [models.Index(fields=["shadow_model", "hour"])]

    def __str__(self):
        return self.key

    @staticmethod
    def make_key(dataset_id, model_id, shadow_model_id, robot_id, slice_name: str, hour) -> str:
        return (
            f"{dataset_id}:{model_id or '-'}:{shadow_model_id}:{robot_id or '-'}:{slice_name or '-'}:"
            f"{hour.strftime('%Y%m%d%H')}"
        )


class DriftReport(models.Model):
    """One drift computation for a dataset, fleet-wide (robot empty) or for one robot: per-feature statistics."""

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    robot = models.ForeignKey("deployments.Robot", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    computed_at = models.DateTimeField(db_index=True)
    window_start = models.DateTimeField()
    reference_size = models.PositiveIntegerField(default=0)
    current_size = models.PositiveIntegerField(default=0)
    features = models.JSONField(
        default=list,
        help_text='[{"feature", "test", "statistic", "p_value", "psi", "threshold", "n_ref", "n_cur", "drifted"}]',
    )
    drifted = models.BooleanField(default=False)
    drifted_features = models.JSONField(default=list)

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["dataset", "computed_at"])]

    def __str__(self):
        scope = self.robot_id or "fleet"
        return f"drift {self.dataset_id}/{scope} at {self.computed_at:%Y-%m-%d %H:%M}"


class Alert(models.Model):
    """Something in the field needs a person: drift, a canary stopped by the guard, a production model doing worse
    than it used to. One open alert per scope; performance alerts resolve themselves when the figures recover."""

    class Kind(models.TextChoices):
        DRIFT = "drift"
        CANARY = "canary"
        PERFORMANCE = "performance"

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    robot = models.ForeignKey("deployments.Robot", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=80, default="fleet", help_text="fleet, robot:<serial> or model:<id>")
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    occurrences = models.PositiveIntegerField(default=1)
    acknowledged = models.BooleanField(default=False)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When the problem went away by itself")

    OPEN = Q(acknowledged=False, resolved_at__isnull=True)

    class Meta:
        ordering = ["acknowledged", "-last_seen", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "kind", "scope"],
                condition=Q(acknowledged=False, resolved_at__isnull=True),
                name="alert_one_open_per_scope",
            )
        ]
        indexes = [models.Index(fields=["dataset", "acknowledged", "last_seen"])]

    def __str__(self):
        return f"{self.kind} alert on {self.dataset_id} ({self.scope})"

    @property
    def is_open(self) -> bool:
        return not self.acknowledged and self.resolved_at is None

    # The one colour of each kind's badge (Bootstrap's text-bg-*), wherever an alert is shown.
    BADGE_COLOURS = {"canary": "danger", "performance": "primary", "drift": "warning"}

    @property
    def badge_class(self) -> str:
        return f"text-bg-{self.BADGE_COLOURS.get(self.kind, 'secondary')}"


class CanaryPolicy(models.Model):
    """When the canary guard ends a canary: how much worse than production, over how many frames each side."""

    dataset = models.OneToOneField("datasets.Dataset", on_delete=models.CASCADE, related_name="canary_policy")
    enabled = models.BooleanField(default=True)
    min_frames = models.PositiveIntegerField(default=500, help_text="Frames needed on both sides before judging")
    max_detection_rate_drop = models.FloatField(
        default=0.10, help_text="Largest tolerated drop of the share of frames with a detection (absolute, 0..1)"
    )
    max_confidence_drop = models.FloatField(
        default=0.10, help_text="Largest tolerated drop of the mean top confidence (absolute, 0..1)"
    )
    max_feedback_rate_increase = models.FloatField(
        default=0.01, help_text="Largest tolerated increase of feedback uploads per frame (absolute)"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "canary policies"

    def __str__(self):
        return f"canary policy of {self.dataset_id}"


class PerformancePolicy(models.Model):
    """When the live production model raises a performance alert: its recent field metrics (fleet-wide and per
    robot) against its own first days in production, or the previous production model's last days."""

    dataset = models.OneToOneField("datasets.Dataset", on_delete=models.CASCADE, related_name="performance_policy")
    enabled = models.BooleanField(default=True)
    baseline_days = models.PositiveIntegerField(default=3, help_text="The model's first days in production")
    window_minutes = models.PositiveIntegerField(default=60, help_text="The recent period judged against it")
    min_frames = models.PositiveIntegerField(default=100, help_text="Frames needed on both sides before judging")
    max_detection_rate_drop = models.FloatField(
        default=0.15, help_text="Largest tolerated drop of the share of frames with a detection (absolute, 0..1)"
    )
    max_confidence_drop = models.FloatField(
        default=0.10, help_text="Largest tolerated drop of the mean top confidence (absolute, 0..1)"
    )
    max_feedback_rate_increase = models.FloatField(
        default=0.02, help_text="Largest tolerated increase of feedback uploads per frame (absolute)"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "performance policies"

    def __str__(self):
        return f"performance policy of {self.dataset_id}"


class NotificationRule(models.Model):
    """Who hears about what on one dataset: an e-mail address or a webhook URL, and the events it gets."""

    class Channel(models.TextChoices):
        EMAIL = "email", "e-mail"
        WEBHOOK = "webhook"

    class Event(models.TextChoices):
        ALERT = "alert", "alerts (drift, canary, performance)"
        GATE = "gate", "gate decisions"
        PROMOTION = "promotion", "promotions and canaries"
        ROLLBACK = "rollback", "rollbacks"
        RUN_FAILED = "run_failed", "failed training runs"

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="notification_rules")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    target = models.CharField(max_length=500, help_text="An e-mail address, or the webhook's https:// URL")
    secret = models.CharField(
        max_length=128, blank=True, help_text="Webhooks: the key of the X-VectorMLOps-Signature HMAC-SHA256"
    )
    events = models.JSONField(default=list, help_text="Event names: " + ", ".join(Event.values))
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "channel", "target"]

    def __str__(self):
        return f"{self.get_channel_display()} {self.target} ({', '.join(self.events)})"


class Notification(models.Model):
    """One message to one rule's target, and how its delivery went (the delivery log)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    rule = models.ForeignKey(NotificationRule, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationRule.Event.choices)
    key = models.CharField(max_length=120, help_text="What it is about; one notification per rule and key")
    subject = models.CharField(max_length=200)
    text = models.TextField()
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["rule", "key"], name="notification_once_per_rule_and_key")]

    def __str__(self):
        return f"{self.event} → {self.rule.target}: {self.status}"
