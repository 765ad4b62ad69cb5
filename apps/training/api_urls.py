from django.urls import path

from apps.training import api

urlpatterns = [
    path("training-runs", api.TrainingRunsApi.as_view(), name="training-runs"),
    path("training-runs/<int:run_id>", api.TrainingRunApi.as_view(), name="training-run"),
    path("training-runs/<int:run_id>/cancel", api.TrainingRunCancelApi.as_view(), name="training-run-cancel"),
    path("training/bases", api.TrainingBasesApi.as_view(), name="training-bases"),
    path("training/base-models", api.BaseModelsApi.as_view(), name="base-models"),
]
