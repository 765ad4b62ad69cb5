"""Pages of the datasets app (annotator and up): dataset list, the dataset page (grid, upload, import, versions),
import progress, version export downloads, and the permission-checked image/thumbnail files every page uses."""

from collections import Counter
from urllib.parse import urlencode

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponseNotModified
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.datasets import selectors, services
from apps.datasets.formats.writers import EXPORT_FORMATS
from apps.datasets.models import Annotation, Dataset, DatasetVersion, Image, ImportJob
from apps.datasets.panels import dataset_panels, image_page_for
from vectormlops.errors import DomainError
from vectormlops.permissions import ANNOTATOR, ML_ENGINEER, has_role, role_required

PAGE_SIZE = 60
GRID_FIELDS = ("id", "dataset_id", "status", "split", "source", "width", "height", "robot_serial", "uploaded_at")


@role_required(ANNOTATOR)
@require_GET
def dataset_list(request):
    return _dataset_list_page(request)


def _dataset_list_page(request, *, submitted: dict | None = None, error: str = "", status: int = 200):
    datasets = list(Dataset.objects.all())
    counts = selectors.dataset_counts([d.pk for d in datasets])
    rows = [{"dataset": d, "counts": counts[d.pk]} for d in datasets]
    context = {
        "rows": rows,
        "can_create": has_role(request.user, ML_ENGINEER),
        "statuses": Image.Status.choices,
        "submitted": submitted or {"review_required": True},
        "create_error": error,
    }
    return render(request, "datasets/list.html", context, status=status)


@role_required(ML_ENGINEER)
@require_POST
def dataset_new(request):
    classes = [c.strip() for c in request.POST.get("classes", "").split(",") if c.strip()]
    submitted = {
        "slug": request.POST.get("slug", "").strip(),
        "name": request.POST.get("name", "").strip(),
        "classes": request.POST.get("classes", ""),
        "review_required": bool(request.POST.get("review_required")),
    }
    try:
        dataset = services.dataset_create(
            slug=submitted["slug"],
            name=submitted["name"],
            classes=classes,
            review_required=submitted["review_required"],
            created_by=request.user,
        )
    except DomainError as exc:
        # The form comes back with what was typed and the reason, instead of an empty form after a redirect.
        return _dataset_list_page(request, submitted=submitted, error=exc.message, status=400)
    return redirect("datasets:detail", slug=dataset.slug)


@role_required(ANNOTATOR)
@require_GET
def dataset_detail(request, slug):
    dataset = get_object_or_404(Dataset, slug=slug)
    params = {k: v for k, v in request.GET.items() if k in selectors.FILTERS and v}
    error = None
    try:
        qs = selectors.images_filter(dataset=dataset, params=params)
    except DomainError as exc:
        error, params, qs = exc.message, {}, Image.objects.filter(dataset=dataset)
    before = request.GET.get("before", "")
    if before.isdigit():
        qs = qs.filter(id__lt=int(before))
    # Keyset pagination on the (dataset, <filter>, id) indexes: one LIMIT query per page, never a COUNT(*).
    page = list(qs.order_by("-id").only(*GRID_FIELDS)[: PAGE_SIZE + 1])
    has_next = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    query = urlencode(params)  # encoded: a time filter's "+00:00" must not become a space
    is_engineer = has_role(request.user, ML_ENGINEER)
    versions = list(dataset.versions.order_by("-number")[:20])
    boxes = dict(Annotation.objects.filter(image_id__in=[i.pk for i in page]).values_list("image_id", "boxes"))
    for image in page:
        image.grid_boxes = boxes.get(image.pk) or []  # drawn over the thumbnail when "Show boxes" is on
    context = {
        "dataset": dataset,
        "images": page,
        "filters": params,
        "filter_error": error,
        "next_url": f"?{query}&before={page[-1].pk}" if has_next else None,
        "first_url": f"?{query}" if before else None,
        "statuses": Image.Status.values,
        "splits": Image.Split.values,
        "sources": Image.Source.values,
        "robots": selectors.robots_of(dataset),
        "versions": versions,
        "is_engineer": is_engineer,
        "import_jobs": list(dataset.import_jobs.all()[:5]) if is_engineer else [],
        "export_formats": EXPORT_FORMATS,
        "panels": dataset_panels(),
        # Labelers open a grid image in the labeling page; ML engineers in the read-only image page.
        "image_page": reverse("datasets:image_detail", args=[dataset.slug]) if is_engineer else image_page_for(dataset),
    }
    return render(request, "datasets/detail.html", context)


@role_required(ML_ENGINEER)
@require_POST
def version_freeze(request, slug):
    dataset = get_object_or_404(Dataset, slug=slug)
    try:
        version = services.version_freeze(dataset=dataset, user=request.user, note=request.POST.get("note", ""))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        if version.created:
            messages.success(request, f"Froze version {version.number} ({version.image_count} images).")
        else:
            messages.info(request, f"Nothing changed since version {version.number}: no new version was made.")
    return redirect("datasets:detail", slug=slug)


@role_required(ML_ENGINEER)
@require_GET
def version_export(request, slug, number, fmt):
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), dataset__slug=slug, number=number)
    try:
        name = services.version_export_prepare(version=version, fmt=fmt)
    except DomainError as exc:
        raise Http404(exc.message) from exc
    if name is None:  # a big version: a Celery task is zipping it; this page reloads until it is there
        return render(request, "datasets/export_wait.html", {"version": version, "fmt": fmt}, status=202)
    return FileResponse(
        default_storage.open(name, "rb"),
        as_attachment=True,
        filename=f"{slug}-v{number}-{fmt}.zip",
        content_type="application/zip",
    )


@role_required(ML_ENGINEER)
@require_POST
def dataset_import(request, slug):
    dataset = get_object_or_404(Dataset, slug=slug)
    upload = request.FILES.get("archive")
    if upload is None:
        messages.error(request, "Choose a .zip file to import.")
        return redirect("datasets:detail", slug=slug)
    try:
        job = services.import_job_create(
            dataset=dataset,
            fileobj=upload,
            filename=upload.name,
            user=request.user,
            approve=bool(request.POST.get("approve")),
            keep_split=bool(request.POST.get("keep_split")),
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("datasets:detail", slug=slug)
    return redirect("datasets:import_job", slug=slug, job_id=job.pk)


@role_required(ML_ENGINEER)
@require_GET
def import_job(request, slug, job_id):
    job = get_object_or_404(ImportJob.objects.select_related("dataset"), pk=job_id, dataset__slug=slug)
    files = (job.report or {}).get("files") or []
    results = Counter(f["result"] for f in files)
    shown = request.GET.get("result", "")
    context = {
        "job": job,
        "dataset": job.dataset,
        "files": [f for f in files if f["result"] == shown] if shown else files,
        "results": sorted(results.items()),
        "shown": shown,
    }
    return render(request, "datasets/import_job.html", context)


@role_required(ML_ENGINEER)
@require_POST
def import_rollback(request, slug, job_id):
    job = get_object_or_404(ImportJob.objects.select_related("dataset"), pk=job_id, dataset__slug=slug)
    try:
        job = services.import_rollback(job=job, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        done = job.report["rollback"]
        messages.success(
            request,
            f"Rolled back: {done['images_removed']} images removed, {done['labels_cleared']} cleared, "
            f"{len(done['kept'])} kept.",
        )
    return redirect("datasets:import_job", slug=slug, job_id=job_id)


def _serve(request, image: Image, name: str, content_type: str):
    etag = f'"{image.sha256}{"-t" if name == image.thumbnail_path else ""}"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified()
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError as exc:
        raise Http404("The image file is missing from storage.") from exc
    response = FileResponse(handle, content_type=content_type)
    response["ETag"] = etag
    # Content-addressed: the bytes behind this URL never change.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@role_required(ANNOTATOR)
@require_GET
def image_file(request, image_id):
    image = get_object_or_404(Image.objects.only("id", "sha256", "storage_path", "format"), pk=image_id)
    return _serve(request, image, image.storage_path, "image/png" if image.format == "PNG" else "image/jpeg")


@role_required(ANNOTATOR)
@require_GET
def image_thumb(request, image_id):
    image = get_object_or_404(Image.objects.only("id", "sha256", "thumbnail_path", "storage_path"), pk=image_id)
    return _serve(request, image, image.thumbnail_path or image.storage_path, "image/jpeg")
