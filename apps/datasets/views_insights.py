"""Read-only pages about what a dataset holds: the overview (statistics and charts), the diff of two frozen
versions, and one image with its boxes, history and the versions that contain it."""

from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.datasets import selectors
from apps.datasets.models import Dataset, DatasetVersion, Image
from apps.datasets.panels import image_facts_for, image_page_for
from vectormlops.permissions import ANNOTATOR, role_required

DIFF_THUMBS = 60  # thumbnails shown per kind of change; the counts are always whole


@role_required(ANNOTATOR)
@require_GET
def dataset_overview(request, slug):
    dataset = get_object_or_404(Dataset, slug=slug)
    overview = selectors.dataset_overview(dataset)
    versions = list(dataset.versions.order_by("-number").values("number", "image_count", "created_at")[:20])
    return render(request, "datasets/overview.html", {"dataset": dataset, "overview": overview, "versions": versions})


@role_required(ANNOTATOR)
@require_GET
def version_diff(request, slug, number):
    """What changed in version ``number`` since ``?against=<number>`` (default: the version before it)."""
    dataset = get_object_or_404(Dataset, slug=slug)
    after = get_object_or_404(DatasetVersion, dataset=dataset, number=number)
    against = request.GET.get("against", "")
    before = get_object_or_404(
        DatasetVersion, dataset=dataset, number=int(against) if against.isdigit() else number - 1
    )
    diff = selectors.version_diff(before, after)
    sections = [
        ("added", f"Added in v{after.number}", diff["added"]),
        ("removed", f"Removed since v{before.number}", diff["removed"]),
        ("relabelled", "Relabelled", diff["relabelled"]),
        ("moved", "Moved to another split", diff["moved"]),
    ]
    return render(
        request,
        "datasets/version_diff.html",
        {
            "dataset": dataset,
            "before": before,
            "after": after,
            "diff": diff,
            "sections": [(key, title, ids[:DIFF_THUMBS], len(ids)) for key, title, ids in sections],
            "versions": dataset.versions.order_by("-number").values_list("number", flat=True),
        },
    )


@role_required(ANNOTATOR)
@require_GET
def image_detail(request, slug):
    """One image, read only: its boxes drawn over it, who labelled it and when, the versions that contain it, and
    what later apps installed (review history, predictions). ``?image=<id>`` as the grid links it."""
    dataset = get_object_or_404(Dataset, slug=slug)
    image_id = request.GET.get("image", "")
    image = get_object_or_404(
        Image.objects.select_related("uploaded_by"), dataset=dataset, pk=int(image_id) if image_id.isdigit() else 0
    )
    annotation = getattr(image, "annotation", None)
    facts = image_facts_for(image, request.user)
    layers = [{"name": "labels", "boxes": annotation.boxes if annotation else [], "color": "#198754"}]
    palette = ["#0d6efd", "#dc3545", "#fd7e14", "#6f42c1"]
    for k, fact in enumerate(f for f in facts if f.boxes is not None):
        layers.append({"name": fact.title, "boxes": fact.boxes, "color": palette[k % len(palette)]})
    labeling = image_page_for(dataset)
    return render(
        request,
        "datasets/image_detail.html",
        {
            "dataset": dataset,
            "image": image,
            "annotation": annotation,
            "versions": selectors.image_versions(image),
            "facts": facts,
            "layers": layers,
            "classes": list(dataset.classes),
            "label_url": f"{labeling}?image={image.pk}" if labeling else "",
            "grid_url": reverse("datasets:detail", args=[dataset.slug]),
        },
    )
