"""Input and output shapes of the training API (shared/API.md)."""

from rest_framework import serializers

from apps.training.models import BaseModel, EpochMetric, TrainingRun


class TrainingRunStartInput(serializers.Serializer):
    dataset = serializers.SlugField()
    version = serializers.IntegerField(required=False, allow_null=True, help_text="Omitted: freeze a version now")
    base = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="One of GET /api/v1/training/bases: 'production', a registered base model (registered:<id>) or a "
        "model config (.yaml); a weights path on the server is accepted too. Omitted: production, else yolov8n.yaml",
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


class BaseChoiceOutput(serializers.Serializer):
    value = serializers.CharField(help_text="What to send as a run's base")
    label = serializers.CharField()
    kind = serializers.ChoiceField(choices=["production", "registered", "config"])


class BaseModelInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    weights = serializers.FileField(use_url=False, help_text="A PyTorch .pt checkpoint of a detection model")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class BaseModelOutput(serializers.ModelSerializer):
    base = serializers.CharField(source="base_value", read_only=True, help_text="What to send as a run's base")

    class Meta:
        model = BaseModel
        fields = ["id", "name", "base", "status", "error", "sha256", "size", "details", "note", "created_at"]
