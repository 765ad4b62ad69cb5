"""The training API (shared/API.md): start a run, read it, cancel it. ML engineers only."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.datasets.models import DatasetVersion
from apps.datasets.selectors import dataset_by_slug
from apps.training import services
from apps.training.models import TrainingRun
from apps.training.serializers import TrainingRunOutput, TrainingRunStartInput
from vectormlops.errors import NotFound
from vectormlops.permissions import IsMLEngineer


def _run_queryset():
    return TrainingRun.objects.select_related("dataset", "dataset_version", "model_version").prefetch_related(
        "epoch_metrics"
    )


class TrainingRunsApi(APIView):
    """POST: start a training run on a dataset (a given frozen version, or one frozen now)."""

    permission_classes = [IsMLEngineer]

    @extend_schema(request=TrainingRunStartInput, responses={201: TrainingRunOutput})
    def post(self, request):
        data = TrainingRunStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        dataset = dataset_by_slug(values.pop("dataset"))
        version_id = values.pop("version", None)
        version = None
        if version_id is not None:
            version = DatasetVersion.objects.filter(pk=version_id, dataset=dataset).first()
            if version is None:
                raise NotFound(
                    f"No version {version_id} in {dataset.slug}.",
                    code="unknown_version",
                    details={"version": version_id},
                )
        run = services.training_run_start(
            dataset=dataset, version=version, user=request.user, trigger=TrainingRun.Trigger.API, **values
        )
        run = _run_queryset().get(pk=run.pk)
        return Response(TrainingRunOutput(run).data, status=status.HTTP_201_CREATED)


class TrainingRunApi(APIView):
    """GET: a run's status, per-epoch metrics, final metrics, and model_id once it succeeded."""

    permission_classes = [IsMLEngineer]

    @extend_schema(responses={200: TrainingRunOutput})
    def get(self, request, run_id: int):
        return Response(TrainingRunOutput(get_object_or_404(_run_queryset(), pk=run_id)).data)


class TrainingRunCancelApi(APIView):
    """POST: cooperative cancel (a queued run ends now, a running one at the next epoch boundary)."""

    permission_classes = [IsMLEngineer]

    @extend_schema(request=None, responses={200: TrainingRunOutput})
    def post(self, request, run_id: int):
        run = get_object_or_404(TrainingRun, pk=run_id)
        services.training_run_cancel(run=run, user=request.user)
        return Response(TrainingRunOutput(_run_queryset().get(pk=run.pk)).data, status=status.HTTP_200_OK)
