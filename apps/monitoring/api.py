"""Monitoring API: acknowledge an alert, read field metrics and alerts (ml_engineer)."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.datasets.selectors import dataset_by_slug
from apps.monitoring import selectors, services
from apps.monitoring.serializers import AlertOutput, FieldMetricsQuery
from vectormlops.permissions import IsMLEngineer


class AlertAcknowledgeApi(APIView):
    """POST /api/v1/alerts/<id>/acknowledge"""

    permission_classes = [IsMLEngineer]

    @extend_schema(request=None, responses=AlertOutput)
    def post(self, request, alert_id: int):
        alert = services.alert_acknowledge(alert=selectors.alert_by_id(alert_id), user=request.user)
        return Response(AlertOutput(alert).data, status=status.HTTP_200_OK)


class DatasetAlertsApi(APIView):
    """GET /api/v1/datasets/<slug>/alerts: open alerts first, then the latest acknowledged ones."""

    permission_classes = [IsMLEngineer]

    @extend_schema(responses=inline_serializer("DatasetAlertsOutput", {"results": AlertOutput(many=True)}))
    def get(self, request, slug: str):
        alerts = selectors.dataset_alerts(dataset=dataset_by_slug(slug))
        return Response({"results": AlertOutput(alerts, many=True).data})


class FieldMetricsApi(APIView):
    """GET /api/v1/datasets/<slug>/field-metrics?hours=168&robot=<serial>: hourly series and totals per model
    version, the fleet table and the version skew."""

    permission_classes = [IsMLEngineer]

    @extend_schema(
        parameters=[
            OpenApiParameter("hours", int, description="How far back (default 168)"),
            OpenApiParameter("robot", str, description="One robot's serial (default: the whole fleet)"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, slug: str):
        dataset = dataset_by_slug(slug)
        query = FieldMetricsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        serial = query.validated_data.get("robot")
        robot = selectors.robot_by_serial(serial) if serial else None
        since = timezone.now() - timedelta(hours=query.validated_data["hours"])
        return Response(selectors.field_report(dataset=dataset, since=since, robot=robot))
