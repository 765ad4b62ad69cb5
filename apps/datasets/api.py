"""The datasets API (shared/API.md): image upload and listing, datasets, freezing versions."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.datasets import selectors, services
from apps.datasets.models import Dataset, ImportJob
from apps.datasets.serializers import (
    DatasetCreateInput,
    DatasetOutput,
    ImageOutput,
    ImageUploadInput,
    ImportJobOutput,
    ImportStartInput,
    VersionCreateInput,
    VersionFreezeOutput,
    VersionOutput,
)
from vectormlops.errors import NotFound, ValidationFailed
from vectormlops.inputs import BoundedFormParser, BoundedMultiPartParser, json_loads_bounded
from vectormlops.permissions import IsAnnotator, IsMLEngineer, IsRobotOrAnnotator, is_robot

UPLOAD_OUTPUT = inline_serializer(
    "ImageUploadOutput",
    {
        "id": serializers.IntegerField(),
        "sha256": serializers.CharField(),
        "split": serializers.CharField(),
        "duplicate": serializers.BooleanField(),
    },
)


class ImagePagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


class ImagesApi(generics.GenericAPIView):
    """POST: upload one image (robots and annotators). GET: images of a dataset, newest first (cursor pages)."""

    parser_classes = [BoundedMultiPartParser, BoundedFormParser]
    pagination_class = ImagePagination
    serializer_class = ImageOutput

    def get_permissions(self):
        return [IsRobotOrAnnotator()] if self.request.method == "POST" else [IsAnnotator()]

    def get_queryset(self):
        slug = self.request.query_params.get("dataset")
        dataset = selectors.dataset_by_slug(slug) if slug else None
        return selectors.images_filter(dataset=dataset, params=self.request.query_params).select_related("dataset")

    @extend_schema(
        parameters=[
            OpenApiParameter(name, str, required=False)
            for name in (
                *("dataset", "status", "split", "source", "robot", "class", "date_from", "date_to"),
                *("uploaded_after", "uploaded_before"),  # ISO 8601 date-times (an alert's window), UTC by default
            )
        ],
        responses=ImageOutput(many=True),
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ImageOutput(page, many=True).data)

    @extend_schema(request=ImageUploadInput, responses={201: UPLOAD_OUTPUT, 200: UPLOAD_OUTPUT})
    def post(self, request):
        data = ImageUploadInput(data=request.data)
        if not data.is_valid():
            if "file" in data.errors:
                raise ValidationFailed("Send the image as the multipart field 'file'.", code="file_required")
            if "dataset" in data.errors:
                raise ValidationFailed("Name the dataset (its slug).", code="dataset_required")
            data.is_valid(raise_exception=True)
        fields = data.validated_data
        dataset = selectors.dataset_by_slug(fields["dataset"])
        robot = is_robot(request.user)
        source = services.image_upload_source(requested=fields.get("source"), by_robot=robot)
        meta = {}
        if fields.get("meta"):
            try:
                meta = json_loads_bounded(fields["meta"])  # depth, numbers and text bounded, or a 400
            except ValidationFailed as exc:
                if exc.code != "malformed_request":
                    raise
                raise ValidationFailed("meta must be a JSON object.", code="invalid_meta") from exc
            if not isinstance(meta, dict):
                raise ValidationFailed("meta must be a JSON object.", code="invalid_meta")
        image, created = services.image_ingest(
            dataset=dataset,
            fileobj=fields["file"],
            source=source,
            captured_at=fields.get("captured_at") or None,
            meta=meta,
            robot_serial=request.user.serial if robot else "",
            uploaded_by=None if robot else request.user,
        )
        body = {"id": image.pk, "sha256": image.sha256, "split": image.split, "duplicate": not created}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class DatasetsApi(APIView):
    """GET: datasets with counts per status and split (annotator+). POST: create one (ml_engineer)."""

    def get_permissions(self):
        return [IsMLEngineer()] if self.request.method == "POST" else [IsAnnotator()]

    @extend_schema(responses=DatasetOutput(many=True))
    def get(self, request):
        datasets = list(Dataset.objects.all())
        counts = selectors.dataset_counts([d.pk for d in datasets])
        return Response(DatasetOutput(datasets, many=True, context={"counts": counts}).data)

    @extend_schema(request=DatasetCreateInput, responses={201: DatasetOutput})
    def post(self, request):
        data = DatasetCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = services.dataset_create(created_by=request.user, **data.validated_data)
        counts = selectors.dataset_counts([dataset.pk])
        return Response(DatasetOutput(dataset, context={"counts": counts}).data, status=status.HTTP_201_CREATED)


class DatasetVersionsApi(APIView):
    """POST: freeze the approved annotations into a new version (ml_engineer). GET: the versions, newest first."""

    def get_permissions(self):
        return [IsMLEngineer()] if self.request.method == "POST" else [IsAnnotator()]

    @extend_schema(responses=VersionOutput(many=True))
    def get(self, request, slug):
        dataset = selectors.dataset_by_slug(slug)
        return Response(VersionOutput(dataset.versions.order_by("-number"), many=True).data)

    @extend_schema(
        request=VersionCreateInput,
        responses={
            201: OpenApiResponse(VersionFreezeOutput, description="A new version, `unchanged: false`"),
            200: OpenApiResponse(
                VersionFreezeOutput,
                description="Nothing changed since the latest version: that version, `unchanged: true`",
            ),
        },
    )
    def post(self, request, slug):
        dataset = selectors.dataset_by_slug(slug)
        data = VersionCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_freeze(dataset=dataset, user=request.user, note=data.validated_data["note"])
        return Response(
            VersionFreezeOutput(version).data,
            status=status.HTTP_201_CREATED if version.created else status.HTTP_200_OK,
        )


class DatasetImportsApi(generics.GenericAPIView):
    """POST: import a zip (YOLO, Roboflow's YOLO export, COCO) in the background (ml_engineer) -> 202 and the job."""

    permission_classes = [IsMLEngineer]
    parser_classes = [BoundedMultiPartParser, BoundedFormParser]
    serializer_class = ImportStartInput

    @extend_schema(request=ImportStartInput, responses={202: ImportJobOutput})
    def post(self, request, slug):
        dataset = selectors.dataset_by_slug(slug)
        data = ImportStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["archive"]
        job = services.import_job_create(
            dataset=dataset,
            fileobj=upload,
            filename=upload.name,
            user=request.user,
            approve=data.validated_data["approve"],
            keep_split=data.validated_data["keep_split"],
        )
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobApi(generics.RetrieveAPIView):
    """GET: an import job's status, progress and report (ml_engineer)."""

    permission_classes = [IsMLEngineer]
    serializer_class = ImportJobOutput
    queryset = ImportJob.objects.select_related("dataset")


class ImportRollbackApi(APIView):
    """POST: undo an import as a whole (ml_engineer): its images and boxes go unless worked on or frozen since."""

    permission_classes = [IsMLEngineer]

    @extend_schema(request=None, responses={200: ImportJobOutput, 404: None, 409: None})
    def post(self, request, pk):
        job = ImportJob.objects.select_related("dataset").filter(pk=pk).first()
        if job is None:
            raise NotFound(f"No import {pk}.", code="unknown_import", details={"import": pk})
        job = services.import_rollback(job=job, user=request.user)
        return Response(ImportJobOutput(job).data)
