"""Input and output serializers of the deployments API."""

from rest_framework import serializers

from apps.deployments.models import Deployment, GateDecision
from apps.deployments.selectors import lifecycle_status


class EnrollInput(serializers.Serializer):
    enrollment_key = serializers.CharField(allow_blank=True, trim_whitespace=False)
    serial = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class TelemetryInput(serializers.Serializer):
    dataset = serializers.SlugField()
    model_id = serializers.IntegerField(required=False, allow_null=True)
    # Records are validated by the service (it also enforces the 500-record limit with a 413).
    records = serializers.ListField(child=serializers.JSONField(), allow_empty=True)
    # [{"model_id", "frames"}]: frames the shadow model skipped over its latency budget (validated by the service).
    shadow_skipped = serializers.JSONField(required=False, allow_null=True)


class PromoteInput(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Deployment.Channel.choices, default=Deployment.Channel.PRODUCTION)
    canary_percent = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=100)
    shadow_percent = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=100)
    reason = serializers.CharField(max_length=2000)
    expected_production_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="The production model the comparison was read against (null: none was live). When another "
        "model is live now: 409 stale_comparison. Omitted: not checked.",
    )


class RollbackInput(serializers.Serializer):
    channel = serializers.ChoiceField(
        choices=[Deployment.Channel.PRODUCTION, Deployment.Channel.CANARY], default=Deployment.Channel.PRODUCTION
    )
    reason = serializers.CharField(max_length=2000)


class DeploymentOutput(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model_id = serializers.IntegerField(read_only=True)
    version = serializers.SerializerMethodField()
    previous_id = serializers.IntegerField(read_only=True)
    restores_id = serializers.IntegerField(read_only=True)
    gate_decision_id = serializers.IntegerField(read_only=True)
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "dataset",
            "channel",
            "action",
            "model_id",
            "version",
            "canary_percent",
            "shadow_percent",
            "reason",
            "created_by",
            "created_at",
            "is_live",
            "ended_at",
            "previous_id",
            "restores_id",
            "gate_decision_id",
            "gate_passed",
        ]

    def get_version(self, obj) -> int | None:
        return obj.model.number if obj.model_id else None

    def get_created_by(self, obj) -> str | None:
        return obj.created_by.get_username() if obj.created_by_id else None


class GateDecisionOutput(serializers.ModelSerializer):
    candidate_id = serializers.IntegerField(read_only=True)
    production_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = GateDecision
        fields = [
            "id",
            "candidate_id",
            "production_id",
            "passed",
            "reasons",
            "map_diff",
            "map_diff_ci",
            "test_set_sha256",
            "near_duplicates",
            "comparison",
            "policy",
            "shadow",
            "created_at",
        ]


class ModelOutput(serializers.Serializer):
    id = serializers.IntegerField()
    dataset = serializers.CharField(source="dataset.slug")
    version = serializers.IntegerField(source="number")
    status = serializers.SerializerMethodField()
    classes = serializers.JSONField()
    imgsz = serializers.IntegerField()
    conf_threshold = serializers.FloatField()
    metrics = serializers.JSONField()
    created_at = serializers.DateTimeField()
    run_id = serializers.IntegerField(allow_null=True)
    artifacts = serializers.SerializerMethodField()
    gate = serializers.SerializerMethodField()

    def get_status(self, obj) -> str:
        return lifecycle_status(obj)

    def get_artifacts(self, obj) -> dict:
        return {
            a.format: {"url": f"/api/v1/models/{obj.pk}/artifacts/{a.format}", "sha256": a.sha256, "size": a.size}
            for a in obj.artifacts.all()
        }

    def get_gate(self, obj) -> dict | None:
        decisions = getattr(obj, "prefetched_decisions", None)
        decision = decisions[0] if decisions else None
        if decision is None:
            return None
        return {
            "id": decision.pk,
            "passed": decision.passed,
            "reasons": decision.reasons,
            "map_diff": decision.map_diff,
            "map_diff_ci": decision.map_diff_ci,
            "production_id": decision.production_id,
        }
