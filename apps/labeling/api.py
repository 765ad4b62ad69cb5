"""Labeling API: annotations with optimistic versions and review (shared/API.md), plus the labeling page's own
endpoints (claim next, claim a given image, heartbeat, release, skip, drafts, live queue state)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.datasets.boxes import boxes_to_api
from apps.datasets.models import Annotation, Dataset, Image
from apps.labeling import selectors, services
from apps.labeling.serializers import (
    AnnotationOutput,
    AnnotationPutInput,
    AnnotationSavedOutput,
    BatchApproveInput,
    ClaimInput,
    DraftInput,
    NextInput,
    RenewInput,
    ReviewInput,
    ReviewOutput,
    VerdictInput,
)
from vectormlops.errors import Conflict
from vectormlops.permissions import IsAnnotator, IsReviewer


def _image(image_id: int) -> Image:
    return get_object_or_404(Image.objects.select_related("dataset"), pk=image_id)


def _plain(value):
    """Serializer output (OrderedDicts) to plain JSON-like data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class AnnotationApi(APIView):
    """GET the current boxes of an image with their version; PUT new boxes with the version they were based on."""

    permission_classes = [IsAnnotator]

    @extend_schema(responses=AnnotationOutput)
    def get(self, request, image_id: int):
        image = _image(image_id)
        annotation = Annotation.objects.filter(image=image).first()
        body = {
            "version": annotation.version if annotation else 0,
            "boxes": boxes_to_api(image.dataset, annotation.boxes) if annotation else [],
            "status": image.status,
        }
        return Response(body)

    @extend_schema(request=AnnotationPutInput, responses=AnnotationSavedOutput)
    def put(self, request, image_id: int):
        image = _image(image_id)
        serializer = AnnotationPutInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        annotation = services.annotation_submit(
            image=image,
            user=request.user,
            boxes_api=_plain(serializer.validated_data["boxes"]),
            version=serializer.validated_data["version"],
        )
        return Response({"version": annotation.version, "status": image.status})


class ReviewApi(APIView):
    """Approve or reject a submitted annotation (reviewer and up)."""

    permission_classes = [IsReviewer]

    @extend_schema(request=ReviewInput, responses=ReviewOutput)
    def post(self, request, image_id: int):
        image = _image(image_id)
        serializer = ReviewInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        event = services.image_review(
            image=image,
            reviewer=request.user,
            decision=data["decision"],
            comment=data["comment"],
            boxes_api=_plain(data["boxes"]) if "boxes" in data else None,
            version=data.get("version"),
        )
        return Response(
            {
                "id": event.pk,
                "image_id": image.pk,
                "decision": event.decision,
                "status": image.status,
                "version": event.annotation_version,
            },
            status=status.HTTP_200_OK,
        )


class ReviewBatchApi(APIView):
    """Approve a filtered set of submitted images at once (the review page's "approve all shown")."""

    permission_classes = [IsReviewer]

    @extend_schema(request=BatchApproveInput, responses=OpenApiTypes.OBJECT)
    def post(self, request, slug: str):
        dataset = get_object_or_404(Dataset, slug=slug)
        serializer = BatchApproveInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        approved = services.images_approve_batch(
            dataset=dataset, reviewer=request.user, image_ids=serializer.validated_data["image_ids"]
        )
        return Response({"approved": approved, "counts": selectors.queue_counts(dataset)})


class SuspectVerdictApi(APIView):
    """A reviewer's verdict on a suspect image: the labels are ``correct``, or were ``fixed``."""

    permission_classes = [IsReviewer]

    @extend_schema(request=VerdictInput, responses=OpenApiTypes.OBJECT)
    def post(self, request, image_id: int):
        image = _image(image_id)
        serializer = VerdictInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        suspect = services.suspect_verdict(image=image, reviewer=request.user, **serializer.validated_data)
        return Response({"image_id": image.pk, "verdict": suspect.verdict})


class ClaimNextApi(APIView):
    """Claim the next image of a dataset's queue; ``exclude`` lists images the page already holds (claim ahead)."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=NextInput, responses=OpenApiTypes.OBJECT)
    def post(self, request, slug: str):
        dataset = get_object_or_404(Dataset, slug=slug)
        serializer = NextInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        image = services.image_claim_next(
            dataset=dataset, user=request.user, exclude_ids=serializer.validated_data["exclude"]
        )
        bundle = selectors.image_bundle(image=image, user=request.user) if image else None
        empty = None if image else selectors.queue_empty_reason(dataset=dataset, user=request.user)
        return Response({"image": bundle, "counts": selectors.queue_counts(dataset), "empty": empty})


class QueueStateApi(APIView):
    """Queue counts and who is working on what (the page's first paint; later changes arrive over WebSocket)."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def get(self, request, slug: str):
        dataset = get_object_or_404(Dataset, slug=slug)
        return Response({"counts": selectors.queue_counts(dataset), "claims": selectors.active_claims(dataset)})


class ReviewQueueApi(APIView):
    """The review page's queue as it is now (the page re-fetches it when its live stream reconnects)."""

    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("annotator", str, description="Only this annotator's submissions"),
            OpenApiParameter("source", str, description="Only images from this source (upload, camera, ...)"),
        ],
        responses=inline_serializer(
            "ReviewQueueOutput",
            {
                "waiting": serializers.IntegerField(),
                "waiting_ids": serializers.ListField(child=serializers.IntegerField()),
                "suspects": serializers.IntegerField(),
            },
        ),
    )
    def get(self, request, slug: str):
        dataset = get_object_or_404(Dataset, slug=slug)
        filters = {name: request.query_params.get(name, "") for name in ("annotator", "source")}
        return Response(selectors.review_queue_state(dataset, **filters))


class ImageBundleApi(APIView):
    """One image as the labeling page shows it; POST claims it (opened from the dataset grid)."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def get(self, request, image_id: int):
        image = _image(image_id)
        return Response(selectors.image_bundle(image=image, user=request.user))

    @extend_schema(request=ClaimInput, responses=OpenApiTypes.OBJECT)
    def post(self, request, image_id: int):
        image = _image(image_id)
        serializer = ClaimInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.image_claim(image=image, user=request.user, take_over=serializer.validated_data["take_over"])
        return Response(selectors.image_bundle(image=image, user=request.user))


class ClaimRenewApi(APIView):
    """Heartbeat of an open labeling page: extends its claims; lists the ones another person has taken."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=RenewInput, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        serializer = RenewInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        renewed, lost = [], []
        images = Image.objects.filter(pk__in=serializer.validated_data["image_ids"]).select_related("dataset")
        for image in images:
            try:
                claim = services.image_claim_renew(image=image, user=request.user)
                renewed.append({"image_id": image.pk, "expires_at": claim.expires_at.isoformat()})
            except Conflict as exc:
                lost.append({"image_id": image.pk, **exc.details})
        return Response({"renewed": renewed, "lost": lost})


class ClaimReleaseApi(APIView):
    """Give an image back to the queue (the page is closing or moving on without submitting)."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, image_id: int):
        released = services.image_claim_release(image=_image(image_id), user=request.user)
        return Response({"released": released})


class SkipApi(APIView):
    """Skip an image: it leaves this person's queue."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, image_id: int):
        services.annotation_skip(image=_image(image_id), user=request.user)
        return Response({"skipped": True})


class DraftApi(APIView):
    """The person's autosaved boxes for one image (PUT to save, DELETE to discard)."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def get(self, request, image_id: int):
        bundle = selectors.image_bundle(image=_image(image_id), user=request.user)
        return Response({"draft": bundle["draft"]})

    @extend_schema(request=DraftInput, responses=OpenApiTypes.OBJECT)
    def put(self, request, image_id: int):
        serializer = DraftInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        draft = services.draft_save(
            image=_image(image_id),
            user=request.user,
            boxes=_plain(serializer.validated_data["boxes"]),
            base_version=serializer.validated_data["base_version"],
        )
        return Response({"saved": True, "updated_at": draft.updated_at.isoformat()})

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def delete(self, request, image_id: int):
        services.draft_discard(image=_image(image_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class StatsApi(APIView):
    """Per-annotator statistics (reviewer and up); ``?dataset=<slug>`` narrows it to one dataset."""

    permission_classes = [IsReviewer]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def get(self, request):
        slug = request.query_params.get("dataset")
        dataset = get_object_or_404(Dataset, slug=slug) if slug else None
        return Response({"annotators": selectors.annotator_stats(dataset=dataset)})
