"""Labeling pages: the dataset list with queue counts, the labeling tool, review queues and annotator statistics."""

from urllib.parse import urlencode

from django.shortcuts import get_object_or_404, render
from django.urls import reverse

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
        "mode": "label",
        "urls": _tool_urls(dataset),
    }
    return render(request, "labeling/label.html", {"dataset": dataset, "config": config, "mode": "label"})


@role_required(REVIEWER)
def review_home(request):
    """Datasets with submitted images waiting for review."""
    return render(request, "labeling/review_home.html", {"rows": selectors.datasets_with_queue_counts()})


def _tool_urls(dataset: Dataset) -> dict:
    return {
        "next": reverse("labeling-next", args=[dataset.slug]),
        "queue": reverse("labeling-queue", args=[dataset.slug]),
        "renew": reverse("labeling-renew"),
        "image": reverse("labeling-image", args=[0]),
        "release": reverse("labeling-release", args=[0]),
        "skip": reverse("labeling-skip", args=[0]),
        "draft": reverse("labeling-draft", args=[0]),
        "annotations": reverse("labeling-annotations", args=[0]),
        "review": reverse("labeling-review", args=[0]),
        "review_batch": reverse("labeling-review-batch", args=[dataset.slug]),
        "suspect": reverse("labeling-suspect", args=[0]),
        "review_page": reverse("labeling:review", args=[dataset.slug]),
        "suspects_page": reverse("labeling:suspects", args=[dataset.slug]),
    }


@role_required(REVIEWER)
def review(request, slug: str):
    """Review with the labeling canvas: zoom, pan, edit boxes, approve (A) or reject (R) and move on, go back (B).
    ``?annotator=`` / ``?source=`` narrow the queue (and what "approve all shown" approves); ``?suspects=1`` walks
    the suspect-labels queue instead; ``?image=<id>`` opens one image."""
    dataset = get_object_or_404(Dataset, slug=slug)
    filters = {k: request.GET.get(k, "") for k in ("annotator", "source")}
    suspects = request.GET.get("suspects") == "1"
    queue = selectors.review_queue(dataset, **filters)
    suspect_queue = selectors.suspect_queue(dataset)
    image_id = request.GET.get("image")
    if image_id and image_id.isdigit():
        image = get_object_or_404(Image, pk=int(image_id), dataset=dataset)
    elif suspects:
        first = suspect_queue.first()
        image = first.image if first else None
    else:
        image = queue.first()
    queue_state = selectors.review_queue_state(dataset, **filters)
    filter_query = urlencode({k: v for k, v in filters.items() if v})
    query = filter_query + ("&suspects=1" if suspects else "")
    urls = _tool_urls(dataset)
    urls["review_queue"] = f"{reverse('labeling-review-queue', args=[dataset.slug])}?{filter_query}"
    config = {
        "mode": "review",
        "dataset": dataset.slug,
        "classes": list(dataset.classes),
        "user": request.user.get_username(),
        "suspects": suspects,
        "bundle": selectors.image_bundle(image=image, user=request.user) if image else None,
        "waiting_ids": queue_state["waiting_ids"],
        "next_url": f"{reverse('labeling:review', args=[dataset.slug])}?{query}",
        "urls": urls,
    }
    context = {
        "dataset": dataset,
        "image": image,
        "waiting": queue_state["waiting"],
        "suspect_count": queue_state["suspects"],
        "filters": filters,
        "annotators": selectors.review_annotators(dataset),
        "sources": Image.Source.values,
        "history": image.review_events.select_related("reviewer")[:5] if image else [],
        "config": config,
        "mode": "review",
    }
    return render(request, "labeling/label.html", context)


@role_required(REVIEWER)
def suspects(request, slug: str):
    """Approved images a trained model doubts, worst first, with the reason per box."""
    dataset = get_object_or_404(Dataset, slug=slug)
    rows = list(selectors.suspect_queue(dataset)[:200])
    return render(request, "labeling/suspects.html", {"dataset": dataset, "rows": rows})


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
