"""Input and output shapes of monitoring's small API."""

from rest_framework import serializers

from apps.monitoring.models import Alert


class AlertOutput(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    robot = serializers.SlugRelatedField(slug_field="serial", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "dataset",
            "kind",
            "scope",
            "robot",
            "value",
            "threshold",
            "message",
            "details",
            "first_seen",
            "last_seen",
            "occurrences",
            "acknowledged",
            "acknowledged_by",
            "acknowledged_at",
            "resolved_at",
        ]
        read_only_fields = fields


class FieldMetricsQuery(serializers.Serializer):
    hours = serializers.IntegerField(min_value=1, max_value=24 * 400, default=7 * 24)
    robot = serializers.CharField(required=False, max_length=64)
