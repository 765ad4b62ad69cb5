"""Input and output shapes of the datasets API (shared/API.md)."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.datasets.models import Dataset, DatasetVersion, Image, ImportJob


class DatasetCreateInput(serializers.Serializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    classes = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=False)
    review_required = serializers.BooleanField(required=False, default=True)
    split_ratios = serializers.DictField(child=serializers.FloatField(min_value=0), required=False)


class DatasetOutput(serializers.ModelSerializer):
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "slug", "name", "classes", "review_required", "split_ratios", "created_at", "counts"]

    def get_counts(self, obj) -> dict:
        counts = self.context.get("counts", {})
        return counts.get(obj.pk)


class ImageUploadInput(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, use_url=False)
    dataset = serializers.CharField(max_length=64)
    captured_at = serializers.CharField(required=False, allow_blank=True)
    source = serializers.CharField(required=False, allow_blank=True)
    meta = serializers.CharField(required=False, allow_blank=True)


class ImageOutput(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "dataset",
            "sha256",
            "split",
            "split_pinned",
            "status",
            "source",
            "width",
            "height",
            "format",
            "size_bytes",
            "captured_at",
            "uploaded_at",
            "robot_serial",
            "labeling_priority",
            "brightness",
            "contrast",
            "sharpness",
            "phash",
            "file_url",
            "thumbnail_url",
        ]

    def get_file_url(self, obj) -> str:
        return reverse("datasets:image_file", args=[obj.pk])

    def get_thumbnail_url(self, obj) -> str:
        return reverse("datasets:image_thumb", args=[obj.pk])


class VersionCreateInput(serializers.Serializer):
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class VersionOutput(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = ["id", "number", "manifest_sha256", "counts", "image_count", "classes", "created_at", "note"]


class VersionFreezeOutput(VersionOutput):
    unchanged = serializers.SerializerMethodField(help_text="True: nothing changed, the latest version came back")

    class Meta(VersionOutput.Meta):
        fields = [*VersionOutput.Meta.fields, "unchanged"]

    def get_unchanged(self, version) -> bool:
        return not getattr(version, "created", True)


class ImportStartInput(serializers.Serializer):
    archive = serializers.FileField(use_url=False)
    approve = serializers.BooleanField(required=False, default=False)
    keep_split = serializers.BooleanField(required=False, default=False)


class ImportJobOutput(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    report = serializers.SerializerMethodField()

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {},
            "description": "The import's report: counts, one entry per file, skipped files and label errors, notes, "
            "classes added, and the rollback once done. Empty while queued.",
        }
    )
    def get_report(self, job: ImportJob) -> dict:
        """The report without what a rollback needs (``undo``: internal, kept in the row)."""
        return {key: value for key, value in (job.report or {}).items() if key != "undo"}

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "dataset",
            "status",
            "original_name",
            "approve",
            "keep_split",
            "done",
            "total",
            "report",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
