"""Deployments API, included under /api/v1/ (paths exactly as shared/API.md spells them)."""

from django.urls import path

from apps.deployments import api

urlpatterns = [
    path("robots/enroll", api.RobotEnrollView.as_view(), name="robot-enroll"),
    path("robot/model", api.RobotModelView.as_view(), name="robot-model"),
    path("robot/ping", api.ping, name="robot-ping"),
    path("telemetry", api.TelemetryView.as_view(), name="telemetry"),
    path("models", api.ModelListView.as_view(), name="model-list"),
    path("models/<int:pk>", api.ModelDetailView.as_view(), name="model-detail"),
    path("models/<int:model_id>/promote", api.ModelPromoteView.as_view(), name="model-promote"),
    path("models/<int:model_id>/artifacts/<str:fmt>", api.ArtifactDownloadView.as_view(), name="model-artifact"),
    path("datasets/<slug:slug>/rollback", api.DatasetRollbackView.as_view(), name="dataset-rollback"),
    path("datasets/<slug:slug>/deployments", api.DatasetDeploymentsView.as_view(), name="dataset-deployments"),
]
