"""The training API (shared/API.md): start a run, read it, cancel it. ML engineers only."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.datasets.models import DatasetVersion
from apps.datasets.selectors import dataset_by_slug
from apps.training import selectors, services
from apps.training.models import BaseModel, TrainingRun
from apps.training.serializers import (
    BaseChoiceOutput,
    BaseModelInput,
    BaseModelOutput,
    TrainingRunOutput,
    TrainingRunStartInput,
)
from vectormlops.errors import NotFound
from vectormlops.inputs import BoundedFormParser, BoundedMultiPartParser
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


class TrainingBasesApi(APIView):
    """GET: what a run of the dataset can start from (production model, registered base models, model configs)."""

    permission_classes = [IsMLEngineer]

    @extend_schema(
        parameters=[OpenApiParameter("dataset", str, description="Slug: lists its production model too")],
        responses={200: BaseChoiceOutput(many=True)},
    )
    def get(self, request):
        slug = request.query_params.get("dataset")
        dataset = dataset_by_slug(slug) if slug else None
        return Response(BaseChoiceOutput(selectors.base_choices(dataset), many=True).data)


class BaseModelsApi(APIView):
    """GET: the registered base models. POST (multipart): register a .pt weights file -> 201, status "checking"
    until a training worker has loaded it safely ("ready") or refused it ("rejected", with the reason)."""

    permission_classes = [IsMLEngineer]
    parser_classes = [BoundedMultiPartParser, BoundedFormParser]

    @extend_schema(responses={200: BaseModelOutput(many=True)})
    def get(self, request):
        return Response(BaseModelOutput(BaseModel.objects.order_by("name"), many=True).data)

    @extend_schema(request={"multipart/form-data": BaseModelInput}, responses={201: BaseModelOutput})
    def post(self, request):
        data = BaseModelInput(data=request.data)
        data.is_valid(raise_exception=True)
        base = services.base_model_register(
            name=data.validated_data["name"],
            upload=data.validated_data["weights"],
            user=request.user,
            note=data.validated_data["note"],
        )
        return Response(BaseModelOutput(base).data, status=status.HTTP_201_CREATED)
