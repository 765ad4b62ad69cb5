"""Input and output shapes of the labeling API."""

from rest_framework import serializers

from apps.datasets.models import Image


class ApiBoxInput(serializers.Serializer):
    """One box as the API spells it: a class name and [x, y, w, h] in original-image pixels."""

    label = serializers.CharField(max_length=200)
    box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4)


class AnnotationPutInput(serializers.Serializer):
    """Body of PUT /images/<id>/annotations. Box sizes, bounds, classes and the 500-box limit are checked by the
    service (apps.datasets.services.annotation_set) so every writer gets the same rules."""

    version = serializers.IntegerField(min_value=0)
    boxes = serializers.ListField(child=ApiBoxInput(), allow_empty=True)


class AnnotationOutput(serializers.Serializer):
    version = serializers.IntegerField()
    boxes = serializers.ListField(child=serializers.DictField())
    status = serializers.ChoiceField(choices=Image.Status.choices)


class AnnotationSavedOutput(serializers.Serializer):
    version = serializers.IntegerField(help_text="The new version (the one sent plus one).")
    status = serializers.ChoiceField(choices=Image.Status.choices)


class ReviewInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    comment = serializers.CharField(allow_blank=True, required=False, default="", max_length=5000)
    boxes = serializers.ListField(
        child=ApiBoxInput(), allow_empty=True, required=False, help_text="The reviewer's edited boxes, if any."
    )
    version = serializers.IntegerField(
        min_value=0, required=False, help_text="The annotation version the edited boxes are based on."
    )


class BatchApproveInput(serializers.Serializer):
    image_ids = serializers.ListField(child=serializers.IntegerField(), min_length=1, max_length=500)


class VerdictInput(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["correct", "fixed"])


class ClaimInput(serializers.Serializer):
    take_over = serializers.BooleanField(
        required=False, default=False, help_text="Take the image over from the person labeling it (asked first)."
    )


class ReviewOutput(serializers.Serializer):
    id = serializers.IntegerField()
    image_id = serializers.IntegerField()
    decision = serializers.CharField()
    status = serializers.ChoiceField(choices=Image.Status.choices)


class NextInput(serializers.Serializer):
    exclude = serializers.ListField(child=serializers.IntegerField(), required=False, default=list, max_length=50)


class RenewInput(serializers.Serializer):
    image_ids = serializers.ListField(child=serializers.IntegerField(), max_length=50)


class DraftInput(serializers.Serializer):
    boxes = serializers.ListField(child=serializers.DictField(), max_length=2000)
    base_version = serializers.IntegerField(min_value=0, required=False, default=0)
