from django.urls import path

from apps.monitoring import api

urlpatterns = [
    path("alerts/<int:alert_id>/acknowledge", api.AlertAcknowledgeApi.as_view(), name="monitoring-alert-acknowledge"),
    path("datasets/<slug:slug>/alerts", api.DatasetAlertsApi.as_view(), name="monitoring-dataset-alerts"),
    path("datasets/<slug:slug>/field-metrics", api.FieldMetricsApi.as_view(), name="monitoring-field-metrics"),
]
