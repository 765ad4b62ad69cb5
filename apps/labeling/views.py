"""Labeling pages: the dataset list with queue counts, the labeling tool, review queues and annotator statistics."""

from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from apps.datasets.boxes import boxes_to_api
from apps.datasets.models import Dataset, Image
from apps.labeling import selectors
from vectormlops.permissions import ANNOTATOR, REVIEWER, role_required


@role_required(ANNOTATOR)
def home(request):
    """Datasets with what is left to label, to review, and who is labeling now."""
    return render(request, "labeling/home.html", {"rows": selectors.datasets_with_queue_counts()})


@role_required(ANNOTATOR)
def label(request, slug: str):
    """The labeling tool; ``?image=<id>`` opens that image (from the dataset grid) instead of the next in queue."""
    dataset = get_object_or_404(Dataset, slug=slug)
    image_id = request.GET.get("image")
    start_image = None
    if image_id and image_id.isdigit():
        start_image = get_object_or_404(Image, pk=int(image_id), dataset=dataset).pk
    config = {
        "dataset": dataset.slug,
        "classes": list(dataset.classes),
        "review_required": dataset.review_required,
        "user": request.user.get_username(),
        "start_image": start_image,
        "urls": {
            "next": reverse("labeling-next", args=[dataset.slug]),
            "queue": reverse("labeling-queue", args=[dataset.slug]),
            "renew": reverse("labeling-renew"),
            "image": reverse("labeling-image", args=[0]),
            "release": reverse("labeling-release", args=[0]),
            "skip": reverse("labeling-skip", args=[0]),
            "draft": reverse("labeling-draft", args=[0]),
            "annotations": reverse("labeling-annotations", args=[0]),
        },
    }
    return render(request, "labeling/label.html", {"dataset": dataset, "config": config})


@role_required(REVIEWER)
def review_home(request):
    """Datasets with submitted images waiting for review."""
    return render(request, "labeling/review_home.html", {"rows": selectors.datasets_with_queue_counts()})


@role_required(REVIEWER)
def review(request, slug: str):
    """Review one submitted image at a time: approve (A) or reject with a comment (R)."""
    dataset = get_object_or_404(Dataset, slug=slug)
    queue = selectors.review_queue(dataset)
    image_id = request.GET.get("image")
    image = None
    if image_id and image_id.isdigit():
        image = get_object_or_404(Image, pk=int(image_id), dataset=dataset)
    else:
        image = queue.first()
    context = {"dataset": dataset, "image": image, "waiting": queue.count()}
    if image is not None:
        annotation = getattr(image, "annotation", None)
        boxes = boxes_to_api(dataset, annotation.boxes) if annotation else []
        context.update(
            {
                "boxes": boxes,
                "image_url": selectors.image_url(image),
                "annotator": annotation.updated_by.get_username() if annotation and annotation.updated_by else "",
                "history": image.review_events.select_related("reviewer")[:5],
                "config": {
                    "image_id": image.pk,
                    "width": image.width,
                    "height": image.height,
                    "classes": list(dataset.classes),
                    "boxes": boxes,
                    "review_url": reverse("labeling-review", args=[image.pk]),
                    "next_url": reverse("labeling:review", args=[dataset.slug]),
                },
            }
        )
    return render(request, "labeling/review.html", context)


@role_required(REVIEWER)
def stats(request):
    """Per-annotator statistics: images and boxes per hour of labeling, rejection rate."""
    slug = request.GET.get("dataset")
    dataset = get_object_or_404(Dataset, slug=slug) if slug else None
    context = {
        "rows": selectors.annotator_stats(dataset=dataset),
        "dataset": dataset,
        "datasets": Dataset.objects.all(),
    }
    return render(request, "labeling/stats.html", context)
