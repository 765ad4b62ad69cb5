"""Reads of the datasets app: counts and the filtered image listing used by the API and the grid page, version
diffs and the dataset overview's statistics."""

import bisect
import math
from datetime import UTC, date, datetime, time, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, IntegerField, Q, QuerySet, Value
from django.db.models.functions import Cast, Least

from apps.datasets.models import Annotation, Dataset, DatasetVersion, Image, VersionItem
from vectormlops.errors import NotFound, ValidationFailed

ROBOTS_CACHE_S = 300
FILTERS = (
    "status",
    "split",
    "source",
    "robot",
    "class",
    "date_from",
    "date_to",
    "uploaded_after",
    "uploaded_before",
    "ids",
)
MAX_IDS_FILTER = 500


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
    if params.get("ids"):
        # Chosen images (a drift alert's, say): comma-separated ids.
        parts = [p.strip() for p in str(params["ids"]).split(",") if p.strip()]
        if not parts or len(parts) > MAX_IDS_FILTER or not all(p.isdigit() for p in parts):
            raise ValidationFailed(
                f"ids must be up to {MAX_IDS_FILTER} comma-separated image ids.",
                code="invalid_ids",
                details={"ids": params["ids"]},
            )
        qs = qs.filter(id__in=[int(p) for p in parts])
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
    # A time window to the second (an alert's): ISO 8601 date-times, UTC unless they say otherwise.
    for name, lookup in (("uploaded_after", "uploaded_at__gte"), ("uploaded_before", "uploaded_at__lt")):
        if params.get(name):
            raw = str(params[name]).strip()
            if "T" in raw:
                raw = raw.replace(" ", "+")  # an unescaped "+00:00" in a URL arrives as " 00:00"
            try:
                moment = datetime.fromisoformat(raw)
                moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
            except (ValueError, OverflowError) as exc:  # not a date-time, or beyond year 9999 in UTC
                raise ValidationFailed(
                    f"{name} must be a date and time (YYYY-MM-DDTHH:MM:SSZ).",
                    code="invalid_datetime",
                    details={name: params[name]},
                ) from exc
            qs = qs.filter(**{lookup: moment})
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


def version_diff(old: DatasetVersion, new: DatasetVersion) -> dict:
    """What changed from one frozen version to another, by image: ``added`` and ``removed`` image ids, ``relabelled``
    (in both, other boxes) and ``moved`` (in both, another split), each sorted."""
    before = dict(
        (pk, (split, boxes)) for pk, split, boxes in old.items.values_list("image_id", "split", "boxes").iterator()
    )
    after = dict(
        (pk, (split, boxes)) for pk, split, boxes in new.items.values_list("image_id", "split", "boxes").iterator()
    )
    both = before.keys() & after.keys()
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "relabelled": sorted(pk for pk in both if _box_key(before[pk][1]) != _box_key(after[pk][1])),
        "moved": sorted(pk for pk in both if before[pk][0] != after[pk][0]),
        "unchanged": len(both),
    }


def _box_key(boxes) -> list:
    return sorted((b["class_id"], *[round(float(v), 2) for v in b["box"]]) for b in boxes or [])


BRIGHTNESS_BINS = 20
SIZE_BINS = 20  # box size as sqrt(box area / image area), 0..1
ASPECT_EDGES = [0, 0.25, 0.33, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, float("inf")]  # width / height
BOXES_PER_IMAGE_MAX = 10  # the last bar holds "10 or more"


def dataset_overview(dataset: Dataset) -> dict:
    """What a dataset holds, for its overview page: images per split and status, by source and robot; the current
    boxes per class, boxes per image, box size and aspect histograms; the brightness distribution per split. One pass
    over the annotations, aggregates in the database for the rest."""
    images = Image.objects.filter(dataset=dataset)
    per_split = {split: {"total": 0} for split in Image.Split.values}
    for row in images.values("split", "status").annotate(n=Count("id")):
        per_split[row["split"]][row["status"]] = row["n"]
        per_split[row["split"]]["total"] += row["n"]
    sources = dict(images.values_list("source").annotate(n=Count("id")).order_by("-n"))
    robots = list(
        images.exclude(robot_serial="").values_list("robot_serial").annotate(n=Count("id")).order_by("-n")[:20]
    )
    classes = list(dataset.classes)
    per_class = [0] * len(classes)
    per_image = [0] * (BOXES_PER_IMAGE_MAX + 1)
    sizes = [0] * SIZE_BINS
    aspects = [0] * (len(ASPECT_EDGES) - 1)
    labelled = Annotation.objects.filter(image__dataset=dataset).exclude(image__status=Image.Status.UNLABELED)
    for boxes, width, height in labelled.values_list("boxes", "image__width", "image__height").iterator(2000):
        boxes = boxes or []
        per_image[min(len(boxes), BOXES_PER_IMAGE_MAX)] += 1
        for box in boxes:
            cid = box.get("class_id", -1)
            if 0 <= cid < len(classes):
                per_class[cid] += 1
            w, h = float(box["box"][2]), float(box["box"][3])
            if w <= 0 or h <= 0 or not width or not height:
                continue
            size = math.sqrt(w * h / (width * height))
            sizes[min(int(size * SIZE_BINS), SIZE_BINS - 1)] += 1
            aspects[bisect.bisect_right(ASPECT_EDGES, w / h) - 1] += 1
    brightness = {split: [0] * BRIGHTNESS_BINS for split in Image.Split.values}
    bucket = Least(Cast(F("brightness") * BRIGHTNESS_BINS, IntegerField()), Value(BRIGHTNESS_BINS - 1))
    for row in images.annotate(bucket=bucket).values("split", "bucket").annotate(n=Count("id")):
        if row["split"] in brightness and row["bucket"] is not None:
            brightness[row["split"]][max(row["bucket"], 0)] += row["n"]
    return {
        "per_split": per_split,
        "sources": sources,
        "robots": robots,
        "classes": classes,
        "boxes_per_class": per_class,
        "boxes_per_image": per_image,
        "box_sizes": sizes,
        "aspect_edges": [e if e != float("inf") else None for e in ASPECT_EDGES],
        "box_aspects": aspects,
        "brightness": brightness,
    }


def image_versions(image: Image) -> list[dict]:
    """The frozen versions that contain an image, newest first, with its split and boxes in each."""
    return list(
        VersionItem.objects.filter(image=image)
        .order_by("-version__number")
        .values("version__number", "version__created_at", "split", "boxes")
    )
