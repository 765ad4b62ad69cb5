"""Reads of the datasets app: counts and the filtered image listing used by the API and the grid page."""

from datetime import UTC, date, datetime, time, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, QuerySet

from apps.datasets.models import Dataset, DatasetVersion, Image, VersionItem
from vectormlops.errors import NotFound, ValidationFailed

ROBOTS_CACHE_S = 300
FILTERS = ("status", "split", "source", "robot", "class", "date_from", "date_to")


def dataset_counts(dataset_ids: list[int]) -> dict[int, dict]:
    """Images per status and per split for each dataset: two grouped queries over indexed columns."""
    counts = {
        pk: {
            "images": 0,
            "status": dict.fromkeys(Image.Status.values, 0),
            "split": dict.fromkeys(Image.Split.values, 0),
        }
        for pk in dataset_ids
    }
    rows = Image.objects.filter(dataset_id__in=dataset_ids).values_list("dataset_id", "status").annotate(n=Count("id"))
    for pk, status, n in rows.order_by():
        counts[pk]["status"][status] = n
        counts[pk]["images"] += n
    rows = Image.objects.filter(dataset_id__in=dataset_ids).values_list("dataset_id", "split").annotate(n=Count("id"))
    for pk, split, n in rows.order_by():
        counts[pk]["split"][split] = n
    return counts


def _class_filter(class_id: int) -> Q:
    # Boxes are stored as {"class_id": i, "box": [...]} (class_id first, written only by annotation_set).
    if connection.vendor == "postgresql":
        return Q(annotation__boxes__contains=[{"class_id": class_id}])
    return Q(annotation__boxes__icontains=f'"class_id": {class_id},')  # SQLite keeps json.dumps' text


def images_filter(*, dataset: Dataset | None, params) -> QuerySet:
    """Images of a dataset narrowed by the grid/API filters; unknown values are a 400 naming the filter."""
    qs = Image.objects.all() if dataset is None else Image.objects.filter(dataset=dataset)
    choices = {"status": Image.Status.values, "split": Image.Split.values, "source": Image.Source.values}
    for name, allowed in choices.items():
        value = params.get(name)
        if value:
            if value not in allowed:
                raise ValidationFailed(
                    f"Unknown {name} {value!r}.", code=f"invalid_{name}", details={name: f"one of {allowed}"}
                )
            qs = qs.filter(**{name: value})
    if params.get("robot"):
        qs = qs.filter(robot_serial=params["robot"])
    if params.get("class") not in (None, ""):
        value = params["class"]
        classes = dataset.classes if dataset else []
        if value in classes:
            class_id = classes.index(value)
        elif str(value).isdecimal():  # not isdigit(): int('²') fails
            class_id = int(value)
        else:
            raise ValidationFailed(f"Unknown class {value!r}.", code="invalid_class", details={"class": value})
        qs = qs.filter(_class_filter(class_id))
    for name, lookup, offset in (("date_from", "uploaded_at__gte", 0), ("date_to", "uploaded_at__lt", 1)):
        if params.get(name):
            try:
                day = date.fromisoformat(params[name])
            except ValueError as exc:
                raise ValidationFailed(
                    f"{name} must be a date (YYYY-MM-DD).", code="invalid_date", details={name: params[name]}
                ) from exc
            # A datetime range (not __date) so the (dataset, uploaded_at) index serves it.
            qs = qs.filter(**{lookup: datetime.combine(day + timedelta(days=offset), time.min, tzinfo=UTC)})
    return qs


def robots_of(dataset: Dataset) -> list[str]:
    """Robot serials that uploaded to a dataset (for the filter menu). The DISTINCT reads the whole dataset's index
    (about 120 ms at 100k images on PostgreSQL), so the answer is cached for a few minutes."""
    key = f"datasets:robots:{dataset.pk}"
    serials = cache.get(key)
    if serials is None:
        serials = list(
            Image.objects.filter(dataset=dataset)
            .exclude(robot_serial="")
            .order_by("robot_serial")
            .values_list("robot_serial", flat=True)
            .distinct()[:200]
        )
        cache.set(key, serials, ROBOTS_CACHE_S)
    return serials


def dataset_by_slug(slug: str) -> Dataset:
    """The dataset with this slug; a missing one is a 404 ``unknown_dataset`` wherever it is named."""
    dataset = Dataset.objects.filter(slug=slug).first() if slug else None
    if dataset is None:
        raise NotFound(f"No dataset {slug!r}.", code="unknown_dataset", details={"dataset": slug})
    return dataset


def version_rows(version: DatasetVersion):
    """A frozen version's items with their image facts, streamed in chunks:
    (sha256, storage_path, width, height, split, boxes, image_id)."""
    return (
        VersionItem.objects.filter(version=version)
        .order_by("id")
        .values_list(
            "image__sha256", "image__storage_path", "image__width", "image__height", "split", "boxes", "image_id"
        )
        .iterator(chunk_size=2000)
    )
