"""The deployments API (shared/API.md): robot endpoints and the automation endpoints for ML engineers."""

import re

from django.core.files.storage import default_storage
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.datasets.selectors import dataset_by_slug
from apps.deployments import robotstate, selectors, services
from apps.deployments.authentication import RobotThrottle
from apps.deployments.serializers import (
    DeploymentOutput,
    EnrollInput,
    GateDecisionOutput,
    ModelOutput,
    PromoteInput,
    RollbackInput,
    TelemetryInput,
)
from apps.training.models import ModelVersion
from vectormlops.errors import NotFound, ValidationFailed, error_body
from vectormlops.permissions import IsMLEngineer, IsRobot, has_role, is_robot

CHUNK = 256 * 1024
JSON_RENDERER = JSONRenderer()


class IsRobotOrMLEngineer(BasePermission):
    """Robots (their artifacts) and ML engineers (inspection, scripts)."""

    def has_permission(self, request, view):
        return is_robot(request.user) or has_role(request.user, "ml_engineer")


class NewestFirst(CursorPagination):
    ordering = "-id"


def _touch(request) -> None:
    """Every robot request updates last-seen (and the model it reports), at most once a minute."""
    model_id = request.META.get("HTTP_X_MODEL_ID", "").strip()
    if model_id and not re.fullmatch(r"[0-9]{1,18}", model_id):  # "²" is a digit to str.isdigit, not to int()
        raise ValidationFailed("X-Model-Id must be a model's id (digits).", code="invalid_model_id")
    sha = request.META.get("HTTP_X_MODEL_SHA256", "").strip().lower()
    robotstate.robot_touch(
        principal=request.user,
        model_id=int(model_id) if model_id else None,
        sha256=sha if re.fullmatch(r"[0-9a-f]{64}", sha) else "",
    )


# --- robot endpoints ----------------------------------------------------------------------------------------


class RobotEnrollApi(APIView):
    """POST /robots/enroll: a robot enrols itself with the enrolment key and gets its token (once).

    At most ``ENROLL_FAILURES_PER_MIN`` wrong keys a minute per client address; past that, 429 until the minute
    ends, even with the right key (decided in ``services.robot_enroll``)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=EnrollInput, responses={201: dict, 400: dict, 403: dict, 409: dict, 429: dict})
    def post(self, request):
        data = EnrollInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            robot, token = services.robot_enroll(
                key=data.validated_data["enrollment_key"],
                serial=data.validated_data["serial"],
                name=data.validated_data["name"],
                address=robotstate.client_address(request),
            )
        except services.EnrollmentThrottled as throttled:
            # DRF's Throttled: the same envelope (code "throttled", details.wait_s) plus its Retry-After header.
            raise exceptions.Throttled(wait=throttled.wait_s, detail=throttled.message) from throttled
        return Response({"serial": robot.serial, "token": token}, status=status.HTTP_201_CREATED)


class RobotModelApi(APIView):
    """GET /robot/model?dataset=: the model this robot should run now (ETag / 304 without a database query)."""

    permission_classes = [IsRobot]
    throttle_classes = [RobotThrottle]
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        # The hottest endpoint answers JSON only (errors included): skip negotiating what there is no choice about.
        return JSON_RENDERER, JSON_RENDERER.media_type

    @extend_schema(responses={200: dict, 304: None, 400: dict, 401: dict, 404: dict, 429: dict})
    def get(self, request):
        slug = request.query_params.get("dataset") or robotstate.only_dataset()
        if slug is None:
            return Response(
                error_body("dataset_required", "Name the dataset (?dataset=<slug>): there is not exactly one."),
                status=400,
            )
        current = robotstate.dataset_state(slug)
        if current is None:
            dataset_by_slug(slug)  # a missing dataset is the API's one 404; one created a moment ago has nothing live
            raise NotFound(f"Nothing is deployed for {slug}.", code="no_deployment")
        _touch(request)
        robotstate.robot_polls(request.user, slug)  # its downloads are limited to the datasets it polls
        user = request.user
        choice = robotstate.robot_choice(current, serial=user.serial, pinned_model_id=user.pinned_model_id)
        if choice is None:
            raise NotFound(f"Nothing is deployed for {slug}.", code="no_deployment")
        etag = robotstate.choice_etag(choice)
        if robotstate.etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            response = HttpResponse(status=304)
        else:
            response = JsonResponse(robotstate.choice_body(choice))
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        return response


def _parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """(start, end inclusive) of a single byte range; None: no/ignored range; False: unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        length = int(last)
        if length == 0:
            return False
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return False
    return start, end


def _stream(path: str, start: int, length: int):
    with default_storage.open(path, "rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


class ArtifactDownloadApi(APIView):
    """GET /models/<id>/artifacts/<format>: the artifact's bytes, streamed from storage; Range → 206."""

    permission_classes = [IsRobotOrMLEngineer]
    throttle_classes = [RobotThrottle]

    @extend_schema(
        responses={(200, "application/octet-stream"): bytes, 206: bytes, 304: None, 401: dict, 404: dict, 416: None}
    )
    def get(self, request, model_id: int, fmt: str):
        artifact = selectors.artifact_of(model_id, fmt)
        # A robot fetches only models that are or were deployed, or pinned to it; others do not exist for it.
        if artifact is None or (is_robot(request.user) and not robotstate.robot_may_fetch(request.user, model_id)):
            raise NotFound(f"Model {model_id} has no {fmt} artifact.", code="artifact_not_found")
        if is_robot(request.user):
            _touch(request)
        etag = f'"{artifact.sha256}"'
        common = {
            "ETag": etag,
            "X-Checksum-Sha256": artifact.sha256,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="model-{model_id}.{fmt}"',
        }
        if robotstate.etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            response = HttpResponse(status=304)
            for key, value in common.items():
                response[key] = value
            return response
        size = artifact.size
        wanted = _parse_range(request.META.get("HTTP_RANGE", ""), size)
        if_range = request.META.get("HTTP_IF_RANGE", "")
        if wanted and if_range and if_range != etag:
            wanted = None  # the robot's partial file is of another version: send it all
        if wanted is False:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        start, end = wanted if wanted else (0, size - 1)
        length = max(0, end - start + 1)
        response = StreamingHttpResponse(
            _stream(artifact.storage_path, start, length),
            status=206 if wanted else 200,
            content_type="application/octet-stream",
        )
        response["Content-Length"] = str(length)
        if wanted:
            response["Content-Range"] = f"bytes {start}-{end}/{size}"
        for key, value in common.items():
            response[key] = value
        return response


class TelemetryApi(APIView):
    """POST /telemetry: a robot's batch of per-frame reports (at most 500)."""

    permission_classes = [IsRobot]
    throttle_classes = [RobotThrottle]

    @extend_schema(request=TelemetryInput, responses={202: dict})
    def post(self, request):
        data = TelemetryInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = dataset_by_slug(data.validated_data["dataset"])
        accepted = services.telemetry_ingest(
            robot_id=request.user.id,
            dataset=dataset,
            model_id=data.validated_data.get("model_id"),
            records=data.validated_data["records"],
            shadow_skipped=data.validated_data.get("shadow_skipped"),
        )
        _touch(request)
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


def ping(request):
    """A trivial Django view (no authentication, no database): the baseline of bench/poll.py."""
    return JsonResponse({"ok": True})


# --- automation endpoints -----------------------------------------------------------------------------------


class ModelListApi(generics.ListAPIView):
    """GET /models?dataset=: models with their lifecycle status (candidate, production, canary, shadow, retired or
    rejected)."""

    permission_classes = [IsMLEngineer]
    serializer_class = ModelOutput
    pagination_class = NewestFirst

    def get_queryset(self):
        slug = self.request.query_params.get("dataset")
        dataset = dataset_by_slug(slug) if slug else None
        return selectors.models_with_status(dataset).order_by("-id")


class ModelDetailApi(generics.RetrieveAPIView):
    """GET /models/<id>: one model, its lifecycle status, its artifacts and its latest gate decision."""

    permission_classes = [IsMLEngineer]
    serializer_class = ModelOutput

    def get_queryset(self):
        return selectors.models_with_status()

    def retrieve(self, request, *args, **kwargs):
        model = self.get_object()
        body = ModelOutput(model).data
        decisions = getattr(model, "prefetched_decisions", None) or []
        body["gate_decisions"] = GateDecisionOutput(decisions[:5], many=True).data
        return Response(body)


class ModelPromoteApi(APIView):
    """POST /models/<id>/promote: put a model live (a person may override a refusing gate; its verdict is kept)."""

    permission_classes = [IsMLEngineer]
    api_errors = {409: ("stale_comparison",)}

    @extend_schema(request=PromoteInput, responses={201: DeploymentOutput, 200: DeploymentOutput})
    def post(self, request, model_id: int):
        model = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=model_id)
        data = PromoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        promotion = services.model_promote(
            model=model,
            channel=data.validated_data["channel"],
            user=request.user,
            reason=data.validated_data["reason"],
            canary_percent=data.validated_data.get("canary_percent"),
            shadow_percent=data.validated_data.get("shadow_percent"),
            expected_production_id=data.validated_data.get("expected_production_id", ...),
        )
        body = {**DeploymentOutput(promotion.deployment).data, "changed": promotion.changed}
        return Response(body, status=status.HTTP_201_CREATED if promotion.changed else status.HTTP_200_OK)


class DatasetRollbackApi(APIView):
    """POST /datasets/<slug>/rollback: re-deploy the model live before the current one."""

    permission_classes = [IsMLEngineer]

    @extend_schema(request=RollbackInput, responses={201: DeploymentOutput})
    def post(self, request, slug: str):
        dataset = dataset_by_slug(slug)
        data = RollbackInput(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_rollback(
            dataset=dataset,
            channel=data.validated_data["channel"],
            user=request.user,
            reason=data.validated_data["reason"],
        )
        return Response(DeploymentOutput(deployment).data, status=status.HTTP_201_CREATED)


class DatasetDeploymentsApi(generics.ListAPIView):
    """GET /datasets/<slug>/deployments: the deployment history, newest first."""

    permission_classes = [IsMLEngineer]
    serializer_class = DeploymentOutput
    pagination_class = NewestFirst

    def get_queryset(self):
        dataset = dataset_by_slug(self.kwargs["slug"])
        return selectors.deployment_history(dataset)
