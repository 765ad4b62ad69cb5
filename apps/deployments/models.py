"""Deployments: which model each robot should run, the append-only history behind it, and the robots."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.datasets.models import Dataset
from apps.training.models import ModelVersion


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
    pinned_at = models.DateTimeField(null=True, blank=True)
    running_reported_at = models.DateTimeField(null=True, blank=True, help_text="When it last reported its model")

    class Meta:
        ordering = ["serial"]

    def __str__(self):
        return self.name or self.serial


class RobotDataset(models.Model):
    """A dataset a robot polls, written on its first poll of it (robots x datasets rows at most): a robot downloads
    only models of the datasets it polls (robotstate.robot_may_fetch)."""

    robot = models.ForeignKey(Robot, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    first_polled_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["robot", "dataset"], name="robot_dataset_once")]

    def __str__(self):
        return f"{self.robot_id} polls {self.dataset_id}"


class Deployment(models.Model):
    """One entry of the append-only history of a (dataset, channel): who put which model live, when and why.

    The live entry of a channel has ``is_live``; a partial unique constraint allows one per (dataset, channel)."""

    class Channel(models.TextChoices):
        PRODUCTION = "production"
        CANARY = "canary"
        SHADOW = "shadow"  # runs beside the robot's model on the same frames; never acted on

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
    shadow_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Share of the fleet (by serial hash) running a shadow model"
    )
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    is_live = models.BooleanField(default=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # A rollback entry names the earlier entry whose model it re-deploys, so repeated rollbacks walk the
    # promotion stack (v7 -> v6 -> v5) instead of bouncing between the last two models.
    restores = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    gate_decision = models.ForeignKey(
        "deployments.GateDecision", null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments"
    )
    gate_passed = models.BooleanField(
        null=True, blank=True, help_text="The gate's verdict at promotion time (None: no decision existed)."
    )

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
            models.CheckConstraint(
                condition=Q(shadow_percent__isnull=True) | Q(shadow_percent__gte=1, shadow_percent__lte=100),
                name="deployment_shadow_percent_range",
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
    # The shadow model's output on the same frame (apps/deployments/shadow.py); empty when none ran.
    shadow_model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    shadow_latency_ms = models.FloatField(null=True)
    shadow_detection_count = models.PositiveIntegerField(null=True)
    shadow_top_confidence = models.FloatField(null=True)
    shadow_detections = models.JSONField(default=list, blank=True)
    shadow_matched = models.PositiveIntegerField(null=True, help_text="Boxes of the two models matched at IoU 0.5")
    live_box_count = models.PositiveIntegerField(null=True, help_text="The live model's valid boxes (shadow frames)")

    class Meta:
        indexes = [
            models.Index(fields=["dataset", "captured_at"]),
            models.Index(fields=["model", "captured_at"]),
            models.Index(fields=["robot", "captured_at"]),
        ]


class ShadowSkip(models.Model):
    """Frames a robot's shadow model skipped (over its latency budget), as reported with a telemetry batch (raw;
    monitoring aggregates and prunes these like telemetry records)."""

    robot = models.ForeignKey(Robot, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    shadow_model = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+")
    frames = models.PositiveIntegerField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)


class PromotionPolicy(models.Model):
    """Per-dataset rules of the promotion gate (admin-editable)."""

    dataset = models.OneToOneField("datasets.Dataset", on_delete=models.CASCADE, related_name="promotion_policy")
    min_gain = models.FloatField(default=0.0, help_text="Candidate mAP50-95 minus production's must be at least this.")
    max_slice_drop = models.FloatField(default=0.05, help_text="No slice's mAP50-95 may drop by more than this.")
    min_test_images = models.PositiveIntegerField(default=20)
    min_map50 = models.FloatField(default=0.5, help_text="The first model (no production yet) needs this mAP50.")
    min_slice_images = models.PositiveIntegerField(
        default=5, help_text="Slices with fewer test images are reported but not gated (too noisy)."
    )
    near_duplicate_distance = models.PositiveSmallIntegerField(
        default=4, help_text="pHash Hamming distance at or below which a training image counts as a near-duplicate."
    )
    auto_promote = models.BooleanField(default=False, help_text="Promote a passing candidate right after training.")
    # Shadow evidence (apps/deployments/shadow.py): field numbers of the candidate beside the live model.
    shadow_min_frames = models.PositiveIntegerField(
        default=0, help_text="Shadow frames required before promotion to production (0: shadow evidence not required)."
    )
    shadow_max_detection_rate_drop = models.FloatField(
        default=0.05, help_text="The shadow model's detection rate may be at most this below the live model's."
    )
    shadow_min_agreement = models.FloatField(
        default=0.0, help_text="Share of shadow frames on which both models' boxes match (IoU 0.5) at least this."
    )
    shadow_max_latency_increase = models.FloatField(
        default=0.5, help_text="The shadow model's mean latency may exceed the live model's by at most this fraction."
    )
    shadow_min_labelled = models.PositiveIntegerField(
        default=3, help_text="Labelled disagreement frames needed before their field precision/recall are gated."
    )
    shadow_max_field_f1_drop = models.FloatField(
        default=0.0, help_text="On labelled disagreement frames, the shadow model's F1 may be at most this below."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "promotion policies"

    def __str__(self):
        return f"policy of {self.dataset_id}"


class Evaluation(models.Model):
    """Metrics of one model on one test set (identified by the hash of its image list and boxes)."""

    model = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="evaluations")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    test_set_sha256 = models.CharField(max_length=64, db_index=True)
    image_count = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict, help_text="overall, per_class, slices (lighting, robot, source)")
    stats_path = models.CharField(max_length=255, blank=True, help_text="Per-image matched stats (.npz) in storage")
    seconds = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["model", "test_set_sha256"], name="evaluation_unique_model_test_set")
        ]

    def __str__(self):
        return f"evaluation of model {self.model_id} on {self.test_set_sha256[:12]}"


class GateDecision(models.Model):
    """The promotion gate's verdict on a candidate against the production model of the time, with its reasons."""

    candidate = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="gate_decisions")
    production = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    candidate_evaluation = models.ForeignKey(
        Evaluation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    production_evaluation = models.ForeignKey(
        Evaluation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    test_set_sha256 = models.CharField(max_length=64, blank=True)
    passed = models.BooleanField()
    reasons = models.JSONField(default=list, help_text="Human sentences: why it passed or failed")
    comparison = models.JSONField(default=dict, help_text="Candidate vs production: overall, per class, per slice")
    map_diff = models.FloatField(null=True, help_text="Candidate minus production mAP50-95 on the same test set")
    map_diff_ci = models.JSONField(default=list, blank=True, help_text="95% bootstrap interval [low, high]")
    near_duplicates = models.JSONField(default=dict, blank=True, help_text="Training images near-duplicating test")
    policy = models.JSONField(default=dict, help_text="The policy values applied")
    shadow = models.JSONField(
        default=dict, blank=True, help_text="Shadow evidence: field numbers beside the live model"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"gate on model {self.candidate_id}: {'pass' if self.passed else 'fail'}"


class EnrollmentKey(models.Model):
    """An admin-set robot enrolment key (stored as sha256); the ROBOT_ENROLLMENT_KEY setting also works."""

    key_hash = models.CharField(max_length=64, unique=True)
    note = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.note or f"key {self.key_hash[:8]}"


class RegistryModel(ModelVersion):
    """The model registry's view of a trained model (admin: promote, start a canary)."""

    class Meta:
        proxy = True
        verbose_name = "registry model"


class DatasetDeployments(Dataset):
    """A dataset seen from deployments (admin: roll back production, end the canary)."""

    class Meta:
        proxy = True
        verbose_name = "dataset deployment"
        verbose_name_plural = "dataset deployments"


class StateGeneration(models.Model):
    """A counter that grows with every change of what robots are told (``dataset:<id>``, ``robots``): see robotstate."""

    scope = models.CharField(max_length=64, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self):
        return f"{self.scope}: {self.value}"
