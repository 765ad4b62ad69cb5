"""Input and output shapes of the training API (shared/API.md)."""

from rest_framework import serializers

from apps.training.models import EpochMetric, TrainingRun


class TrainingRunStartInput(serializers.Serializer):
    dataset = serializers.SlugField()
    version = serializers.IntegerField(required=False, allow_null=True, help_text="Omitted: freeze a version now")
    base = serializers.CharField(
        required=False, allow_blank=True, help_text="An ultralytics .yaml, a weights path, or 'production'"
    )
    epochs = serializers.IntegerField(required=False, default=30, min_value=1, max_value=10_000)
    imgsz = serializers.IntegerField(required=False, default=320, min_value=32, max_value=4096)
    batch = serializers.IntegerField(required=False, default=16, min_value=1, max_value=1024)
    patience = serializers.IntegerField(required=False, default=50, min_value=1, max_value=10_000)
    seed = serializers.IntegerField(required=False, default=0)
    device = serializers.CharField(required=False, default="auto", max_length=32)


class EpochMetricOutput(serializers.ModelSerializer):
    class Meta:
        model = EpochMetric
        fields = ["epoch", "losses", "precision", "recall", "map50", "map50_95", "seconds"]


class TrainingRunOutput(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    version = serializers.SerializerMethodField()
    epoch_metrics = EpochMetricOutput(many=True, read_only=True)
    model_id = serializers.SerializerMethodField()
    model_number = serializers.SerializerMethodField()
    base_model_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "status", "dataset", "version", "base", "base_model_id", "epochs", "imgsz", "batch", "patience",
            "seed", "device", "trigger", "cancel_requested", "queued_at", "started_at", "finished_at", "heartbeat_at",
            "attempts", "worker_host", "code_revision", "package_versions", "final_metrics", "epoch_metrics",
            "error", "log_tail", "model_id", "model_number",
        ]  # fmt: skip

    def get_version(self, run) -> dict | None:
        version = run.dataset_version
        return {"id": version.pk, "number": version.number} if version else None

    def _model(self, run):
        try:
            return run.model_version
        except TrainingRun.model_version.RelatedObjectDoesNotExist:
            return None

    def get_model_id(self, run) -> int | None:
        model = self._model(run)
        return model.pk if model else None

    def get_model_number(self, run) -> int | None:
        model = self._model(run)
        return model.number if model else None
