"""Deployments API, included under /api/v1/ (paths exactly as shared/API.md spells them)."""

from django.urls import path

from apps.deployments import api

urlpatterns = [
    path("robots/enroll", api.RobotEnrollApi.as_view(), name="robot-enroll"),
    path("robot/model", api.RobotModelApi.as_view(), name="robot-model"),
    path("robot/ping", api.ping, name="robot-ping"),
    path("telemetry", api.TelemetryApi.as_view(), name="telemetry"),
    path("models", api.ModelListApi.as_view(), name="model-list"),
    path("models/<int:pk>", api.ModelDetailApi.as_view(), name="model-detail"),
    path("models/<int:model_id>/promote", api.ModelPromoteApi.as_view(), name="model-promote"),
    path("models/<int:model_id>/artifacts/<str:fmt>", api.ArtifactDownloadApi.as_view(), name="model-artifact"),
    path("datasets/<slug:slug>/rollback", api.DatasetRollbackApi.as_view(), name="dataset-rollback"),
    path("datasets/<slug:slug>/deployments", api.DatasetDeploymentsApi.as_view(), name="dataset-deployments"),
]
