"""Admin for the labeling workflow; actions go through services."""

from django.contrib import admin, messages

from apps.labeling import services
from apps.labeling.models import Draft, ImageClaim, LabelingEvent, Prediction, PrelabelModel, ReviewEvent


@admin.register(ImageClaim)
class ImageClaimAdmin(admin.ModelAdmin):
    list_display = ("image", "user", "claimed_at", "expires_at")
    list_select_related = ("user",)
    raw_id_fields = ("image",)
    actions = ["release_claims"]

    @admin.action(description="Release the selected claims (the images go back to the queue)")
    def release_claims(self, request, queryset):
        count = 0
        for claim in queryset.select_related("image__dataset", "user"):
            count += services.image_claim_release(image=claim.image, user=claim.user)
        self.message_user(request, f"Released {count} claim(s).", messages.SUCCESS)


@admin.register(Draft)
class DraftAdmin(admin.ModelAdmin):
    list_display = ("image", "user", "base_version", "updated_at")
    raw_id_fields = ("image",)


@admin.register(ReviewEvent)
class ReviewEventAdmin(admin.ModelAdmin):
    list_display = ("image", "decision", "reviewer", "annotator", "annotation_version", "created_at")
    list_filter = ("decision",)
    search_fields = ("comment",)
    raw_id_fields = ("image",)

    def has_change_permission(self, request, obj=None):
        return False  # history: written by image_review only


@admin.register(LabelingEvent)
class LabelingEventAdmin(admin.ModelAdmin):
    list_display = ("image", "user", "kind", "box_count", "duration_s", "created_at")
    list_filter = ("kind", "dataset")
    raw_id_fields = ("image",)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("image", "source", "model_id", "certainty", "created_at")
    list_filter = ("source",)
    raw_id_fields = ("image",)
    ordering = ("certainty",)


@admin.register(PrelabelModel)
class PrelabelModelAdmin(admin.ModelAdmin):
    list_display = ("dataset", "model_id", "sha256", "updated_at")
    readonly_fields = ("sha256", "updated_at")
