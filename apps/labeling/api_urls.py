"""Labeling API under /api/v1/ (paths as shared/API.md spells them: no prefix, no trailing slash)."""

from django.urls import path

from apps.labeling import api

urlpatterns = [
    path("images/<int:image_id>/annotations", api.AnnotationApi.as_view(), name="labeling-annotations"),
    path("images/<int:image_id>/review", api.ReviewApi.as_view(), name="labeling-review"),
    path("labeling/datasets/<slug:slug>/next", api.ClaimNextApi.as_view(), name="labeling-next"),
    path("labeling/datasets/<slug:slug>/review-batch", api.ReviewBatchApi.as_view(), name="labeling-review-batch"),
    path("labeling/images/<int:image_id>/suspect", api.SuspectVerdictApi.as_view(), name="labeling-suspect"),
    path("labeling/datasets/<slug:slug>/queue", api.QueueStateApi.as_view(), name="labeling-queue"),
    path("labeling/datasets/<slug:slug>/review-queue", api.ReviewQueueApi.as_view(), name="labeling-review-queue"),
    path("labeling/images/<int:image_id>", api.ImageBundleApi.as_view(), name="labeling-image"),
    path("labeling/images/<int:image_id>/release", api.ClaimReleaseApi.as_view(), name="labeling-release"),
    path("labeling/images/<int:image_id>/skip", api.SkipApi.as_view(), name="labeling-skip"),
    path("labeling/images/<int:image_id>/draft", api.DraftApi.as_view(), name="labeling-draft"),
    path("labeling/claims/renew", api.ClaimRenewApi.as_view(), name="labeling-renew"),
    path("labeling/stats", api.StatsApi.as_view(), name="labeling-stats"),
]
