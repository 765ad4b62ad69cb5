"""Deployments: which model each robot should run, the append-only history behind it, and the robots."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Robot(models.Model):
    """An enrolled Vector (through the agent next to it). Only the sha256 of its token is stored."""

    serial = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True, help_text="Untick to revoke the robot's token.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    running_model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    running_sha256 = models.CharField(max_length=64, blank=True)
    pinned_model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="pinned_robots"
    )

    class Meta:
        ordering = ["serial"]

    def __str__(self):
        return self.name or self.serial


class Deployment(models.Model):
    """One entry of the append-only history of a (dataset, channel): who put which model live, when and why.

    The live entry of a channel has ``is_live``; a partial unique constraint allows one per (dataset, channel)."""

    class Channel(models.TextChoices):
        PRODUCTION = "production"
        CANARY = "canary"

    class Action(models.TextChoices):
        PROMOTE = "promote"
        ROLLBACK = "rollback"
        END = "end", "end (channel emptied)"

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="deployments")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.PROMOTE)
    model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="deployments"
    )
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    canary_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    is_live = models.BooleanField(default=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "channel"], condition=Q(is_live=True), name="deployment_one_live_per_channel"
            ),
            models.CheckConstraint(
                condition=Q(canary_percent__isnull=True) | Q(canary_percent__gte=1, canary_percent__lte=100),
                name="deployment_canary_percent_range",
            ),
        ]

    def __str__(self):
        return f"{self.dataset_id}/{self.channel}: model {self.model_id} ({self.action})"


class TelemetryRecord(models.Model):
    """One frame's report from a robot in the field (raw; monitoring aggregates and prunes these)."""

    robot = models.ForeignKey(Robot, on_delete=models.CASCADE, related_name="telemetry")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    captured_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    latency_ms = models.FloatField(null=True)
    detection_count = models.PositiveIntegerField(default=0)
    top_confidence = models.FloatField(null=True)
    detections = models.JSONField(default=list)
    brightness = models.FloatField(null=True)
    contrast = models.FloatField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["dataset", "captured_at"]),
            models.Index(fields=["model", "captured_at"]),
            models.Index(fields=["robot", "captured_at"]),
        ]
