"""Every write of the datasets app: datasets and classes, image ingestion, the one annotation writer, splits,
frozen versions, materialising/exporting versions and importing YOLO/COCO data."""

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.datasets import formats
from apps.datasets.imaging import inspect_image
from apps.datasets.models import Annotation, Dataset, DatasetVersion, Image, ImportJob, VersionItem
from apps.datasets.signals import image_ingested
from vectormlops.errors import Conflict, DomainError, NotFound, PayloadTooLarge, ValidationFailed
from vectormlops.events import broadcast

log = logging.getLogger(__name__)

MAX_BOXES = 500
BOX_TOLERANCE_PX = 0.5  # float round trips (YOLO's normalised centres) may overshoot the border by a hair
SPLITS = ("train", "val", "test")
CHUNK = 1024 * 1024


# --- datasets and classes --------------------------------------------------------------------------------------


def _clean_class_names(classes) -> list[str]:
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValidationFailed("classes must be a list of names.", code="invalid_classes")
    names = [c.strip() for c in classes]
    if any(not n or len(n) > 100 for n in names):
        raise ValidationFailed("Class names must be 1 to 100 characters.", code="invalid_classes")
    if len(set(names)) != len(names):
        raise ValidationFailed("Class names must be unique.", code="invalid_classes")
    return names


def _clean_split_ratios(ratios) -> dict:
    if not isinstance(ratios, dict) or set(ratios) - set(SPLITS):
        raise ValidationFailed("split_ratios must map train/val/test to numbers.", code="invalid_split_ratios")
    cleaned = {s: _number(ratios.get(s, 0)) for s in SPLITS}
    if any(v is None or v < 0 for v in cleaned.values()) or not cleaned["train"]:
        raise ValidationFailed("split_ratios must be non-negative and give train a share.", code="invalid_split_ratios")
    return cleaned


def dataset_create(
    *,
    slug: str,
    name: str,
    classes: list[str],
    created_by=None,
    review_required: bool = True,
    split_ratios: dict | None = None,
) -> Dataset:
    """A new dataset (detection task) with its ordered class names; a taken slug is a 409."""
    dataset = Dataset(
        slug=slug,
        name=name,
        classes=_clean_class_names(classes),
        review_required=review_required,
        created_by=created_by,
    )
    if split_ratios is not None:
        dataset.split_ratios = _clean_split_ratios(split_ratios)
    try:
        dataset.full_clean(validate_unique=False)
    except DjangoValidationError as exc:
        raise ValidationFailed("; ".join(exc.messages), code="invalid", details=exc.message_dict) from exc
    try:
        with transaction.atomic():
            dataset.save()
    except IntegrityError as exc:
        raise Conflict(f"The slug {slug!r} is taken.", code="slug_taken", details={"slug": slug}) from exc
    return dataset


@transaction.atomic
def dataset_class_add(*, dataset: Dataset, name: str) -> int:
    """Append a class (boxes refer to classes by index, so appending never changes existing boxes); returns its id."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    names = _clean_class_names([*dataset.classes, name])
    dataset.classes = names
    dataset.save(update_fields=["classes"])
    return len(names) - 1


@transaction.atomic
def dataset_class_rename(*, dataset: Dataset, class_id: int, name: str) -> Dataset:
    """Rename a class in place; boxes store the class id, so nothing else changes."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    if not isinstance(class_id, int) or not 0 <= class_id < len(dataset.classes):
        raise ValidationFailed(f"No class with id {class_id}.", code="unknown_class", details={"class_id": class_id})
    names = list(dataset.classes)
    names[class_id] = name
    dataset.classes = _clean_class_names(names)
    dataset.save(update_fields=["classes"])
    return dataset


def dataset_get(*, slug: str) -> Dataset:
    try:
        return Dataset.objects.get(slug=slug)
    except Dataset.DoesNotExist as exc:
        raise NotFound(f"No dataset {slug!r}.", code="unknown_dataset", details={"dataset": slug}) from exc


# --- splits ----------------------------------------------------------------------------------------------------


def split_for(sha256: str, ratios: dict | None = None) -> str:
    """The split of an image: a pure function of its sha256 and the dataset's ratios (default 80/10/10)."""
    ratios = ratios or {"train": 0.8, "val": 0.1, "test": 0.1}
    weights = [max(0.0, float(ratios.get(s, 0) or 0)) for s in SPLITS]
    total = sum(weights) or 1.0
    # The first 52 bits of the hash, as a uniform number in [0, 1).
    point = int(sha256[:13], 16) / float(1 << 52)
    edge = 0.0
    for split, weight in zip(SPLITS, weights, strict=True):
        edge += weight / total
        if point < edge:
            return split
    return next(s for s, w in zip(SPLITS, weights, strict=True) if w > 0) if any(weights) else "train"


@transaction.atomic
def image_split_pin(*, image: Image, split: str) -> Image:
    """An admin fixes an image's split (a curated test set); the only way a split ever changes."""
    if split not in Image.Split.values:
        raise ValidationFailed(f"Unknown split {split!r}.", code="invalid_split", details={"split": split})
    image = Image.objects.select_for_update().get(pk=image.pk)
    image.split = split
    image.split_pinned = True
    image.save(update_fields=["split", "split_pinned"])
    return image


def images_prioritize(*, image_ids: Iterable[int], priority: int) -> int:
    """Set the labeling priority of images (monitoring queues drift samples with it); returns rows changed."""
    if not isinstance(priority, int) or not -32768 <= priority <= 32767:
        raise ValidationFailed("priority must be a small integer.", code="invalid_priority")
    return Image.objects.filter(pk__in=list(image_ids)).update(labeling_priority=priority)


# --- ingestion -------------------------------------------------------------------------------------------------


def _spool(fileobj, limit: int) -> tuple[tempfile._TemporaryFileWrapper, str, int]:
    """Copy the upload to a temp file in chunks, hashing and counting as it goes; stop as soon as it is too big."""
    size_hint = getattr(fileobj, "size", None)
    if isinstance(size_hint, int) and size_hint > limit:
        raise PayloadTooLarge(
            f"The file is {size_hint} bytes, more than the limit of {limit}.",
            code="file_too_large",
            details={"max_bytes": limit},
        )
    if hasattr(fileobj, "seek"):
        try:
            fileobj.seek(0)
        except (OSError, ValueError):
            pass
    spool = tempfile.NamedTemporaryFile(prefix="vm-ingest-", suffix=".bin")
    digest = hashlib.sha256()
    size = 0
    try:
        chunks = fileobj.chunks(CHUNK) if hasattr(fileobj, "chunks") else iter(lambda: fileobj.read(CHUNK), b"")
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"The file is more than the limit of {limit} bytes.",
                    code="file_too_large",
                    details={"max_bytes": limit},
                )
            digest.update(chunk)
            spool.write(chunk)
        spool.flush()
    except BaseException:
        spool.close()
        raise
    if size == 0:
        spool.close()
        raise ValidationFailed("The file is empty.", code="empty_file")
    return spool, digest.hexdigest(), size


def _store(name: str, content) -> bool:
    """Save under a content-addressed name unless it is already there; True when this call wrote it."""
    if default_storage.exists(name):
        return False
    saved = default_storage.save(name, content)
    if saved != name:
        # Someone stored the same bytes a moment ago; the copy under the other name is redundant.
        default_storage.delete(saved)
        return False
    return True


def _parse_captured_at(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationFailed(
                "captured_at must be an ISO 8601 date and time.", code="invalid_captured_at", details={"value": value}
            ) from exc
    else:
        raise ValidationFailed("captured_at must be an ISO 8601 date and time.", code="invalid_captured_at")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def image_ingest(
    *,
    dataset: Dataset,
    fileobj,
    source: str,
    captured_at=None,
    meta: dict | None = None,
    robot_serial: str = "",
    uploaded_by=None,
) -> tuple[Image, bool]:
    """Store one JPEG/PNG in a dataset (streamed, hashed, verified, described). Returns (image, created);
    the same bytes again return the existing image and write nothing. Bad input raises before anything is written."""
    if source not in Image.Source.values:
        raise ValidationFailed(f"Unknown source {source!r}.", code="invalid_source", details={"source": source})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ValidationFailed("meta must be a JSON object.", code="invalid_meta")
    captured = _parse_captured_at(captured_at)
    spool, sha256, size = _spool(fileobj, settings.MAX_UPLOAD_BYTES)
    with spool:
        existing = Image.objects.filter(dataset=dataset, sha256=sha256).first()
        if existing is not None:
            return existing, False
        facts = inspect_image(spool.name, max_pixels=settings.MAX_IMAGE_PIXELS)
        storage_path = f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{facts.ext}"
        thumbnail_path = f"thumbs/{sha256[:2]}/{sha256[2:4]}/{sha256}.jpg"
        spool.seek(0)
        wrote_image = _store(storage_path, File(spool, name=storage_path))
        wrote_thumb = _store(thumbnail_path, ContentFile(facts.thumbnail, name=thumbnail_path))
    image = Image(
        dataset=dataset,
        sha256=sha256,
        storage_path=storage_path,
        thumbnail_path=thumbnail_path,
        width=facts.width,
        height=facts.height,
        format=facts.format,
        size_bytes=size,
        captured_at=captured,
        source=source,
        robot_serial=robot_serial or "",
        uploaded_by=uploaded_by,
        meta=meta,
        split=split_for(sha256, dataset.split_ratios),
        brightness=facts.brightness,
        contrast=facts.contrast,
        sharpness=facts.sharpness,
        color_histogram=facts.color_histogram,
        phash=facts.phash,
    )
    try:
        with transaction.atomic():
            image.save()
            transaction.on_commit(lambda: _announce(image))
    except IntegrityError:
        # A concurrent upload of the same bytes won the unique constraint: theirs is the image.
        existing = Image.objects.filter(dataset=dataset, sha256=sha256).first()
        if existing is None:
            raise
        return existing, False
    except BaseException:
        _forget_files(sha256, storage_path if wrote_image else None, thumbnail_path if wrote_thumb else None)
        raise
    return image, True


def _forget_files(sha256: str, *names) -> None:
    """Remove files this call stored when its row was not written, unless another dataset's row uses them."""
    if Image.objects.filter(sha256=sha256).exists():
        return
    for name in names:
        if name:
            try:
                default_storage.delete(name)
            except Exception:  # noqa: BLE001 - cleanup is best effort
                log.warning("could not delete %s", name, exc_info=True)


def _announce(image: Image) -> None:
    image_ingested.send(sender=Image, image=image)
    broadcast(
        f"dataset.{image.dataset.slug}",
        "image_ingested",
        {"id": image.pk, "split": image.split, "status": image.status, "source": image.source},
    )


# --- annotations (the one writer of boxes) ---------------------------------------------------------------------


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def boxes_validate(*, boxes, class_count: int, width: int, height: int) -> list[dict]:
    """Check DB-form boxes and return them cleaned (extra keys dropped, clamped to the image)."""
    if not isinstance(boxes, list):
        raise ValidationFailed("boxes must be a list.", code="invalid_boxes", details={"boxes": "must be a list"})
    if len(boxes) > MAX_BOXES:
        raise ValidationFailed(
            f"At most {MAX_BOXES} boxes per image.", code="too_many_boxes", details={"boxes": f"max {MAX_BOXES}"}
        )
    cleaned = []
    for index, item in enumerate(boxes):

        def bad(reason: str, index=index):
            raise ValidationFailed(
                f"Box {index}: {reason}", code="invalid_boxes", details={"boxes": {str(index): reason}, "index": index}
            )

        if not isinstance(item, dict):
            bad("must be an object with class_id and box.")
        class_id = item.get("class_id")
        if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < class_count:
            bad(f"class_id {class_id!r} is not one of the dataset's {class_count} classes.")
        coords = item.get("box")
        if not isinstance(coords, list | tuple) or len(coords) != 4:
            bad("box must be [x, y, width, height].")
        x, y, w, h = (_number(v) for v in coords)
        if None in (x, y, w, h):
            bad("box values must be finite numbers.")
        if w <= 0 or h <= 0:
            bad("width and height must be greater than zero.")
        t = BOX_TOLERANCE_PX
        if x < -t or y < -t or x + w > width + t or y + h > height + t:
            bad(f"box lies outside the {width}x{height} image.")
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(width), x + w), min(float(height), y + h)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            bad("box has no area inside the image.")
        cleaned.append(
            {"class_id": class_id, "box": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]}
        )
    return cleaned


def boxes_from_api(dataset: Dataset, boxes) -> list[dict]:
    """API boxes ``{"label", "box"}`` to DB boxes ``{"class_id", "box"}``; an unknown label is a 400."""
    if not isinstance(boxes, list):
        raise ValidationFailed("boxes must be a list.", code="invalid_boxes", details={"boxes": "must be a list"})
    index = {name: i for i, name in enumerate(dataset.classes)}
    result = []
    for i, item in enumerate(boxes):
        if not isinstance(item, dict):
            raise ValidationFailed(
                f"Box {i}: must be an object with label and box.",
                code="invalid_boxes",
                details={"boxes": {str(i): "must be an object"}, "index": i},
            )
        label = item.get("label")
        if label not in index:
            raise ValidationFailed(
                f"Box {i}: unknown label {label!r}.",
                code="unknown_label",
                details={"boxes": {str(i): f"unknown label {label!r}"}, "index": i, "classes": list(dataset.classes)},
            )
        result.append({"class_id": index[label], "box": item.get("box")})
    return result


def boxes_to_api(dataset: Dataset, boxes) -> list[dict]:
    """DB boxes to API boxes (label names from the dataset's current classes)."""
    names = dataset.classes
    return [
        {"label": names[b["class_id"]] if 0 <= b["class_id"] < len(names) else str(b["class_id"]), "box": b["box"]}
        for b in boxes or []
    ]


@transaction.atomic
def annotation_set(*, image: Image, boxes, user=None, expected_version: int | None = None, status=None) -> Annotation:
    """Replace an image's boxes (DB form). Optimistic concurrency: a stale ``expected_version`` is a 409.
    Locks the image row, then the annotation row (always in that order). Optionally sets the image's status."""
    locked = Image.objects.select_for_update().select_related("dataset").get(pk=image.pk)
    cleaned = boxes_validate(
        boxes=boxes, class_count=len(locked.dataset.classes), width=locked.width, height=locked.height
    )
    if status is not None and status not in Image.Status.values:
        raise ValidationFailed(f"Unknown status {status!r}.", code="invalid_status", details={"status": status})
    annotation = Annotation.objects.select_for_update().filter(image=locked).first()
    current = annotation.version if annotation else 0
    if expected_version is not None and expected_version != current:
        raise Conflict(
            "Someone saved this image's boxes after you loaded them.",
            code="stale_version",
            details={"current_version": current},
        )
    if annotation is None:
        annotation = Annotation(image=locked)
    annotation.boxes = cleaned
    annotation.version = current + 1
    annotation.updated_by = user if getattr(user, "pk", None) and not getattr(user, "is_robot", False) else None
    annotation.save()
    if status is not None and locked.status != status:
        locked.status = status
        locked.save(update_fields=["status"])
    image.status = locked.status
    return annotation


# --- versions --------------------------------------------------------------------------------------------------


def _manifest_sha256(classes: list[str], rows: list[tuple[str, str, list]]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"classes": classes}, sort_keys=True, separators=(",", ":")).encode())
    for sha, split, boxes in sorted(rows, key=lambda r: r[0]):
        line = json.dumps([sha, split, boxes], sort_keys=True, separators=(",", ":"))
        digest.update(b"\n" + line.encode())
    return digest.hexdigest()


@transaction.atomic
def version_freeze(*, dataset: Dataset, user=None, note: str = "") -> DatasetVersion:
    """Freeze the approved annotations (submitted too when review is off) into a new numbered version.
    Later edits never change it; two freezes of the same content have the same manifest hash."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    statuses = [Image.Status.APPROVED] if dataset.review_required else [Image.Status.APPROVED, Image.Status.SUBMITTED]
    rows = list(
        Image.objects.filter(dataset=dataset, status__in=statuses)
        .order_by("id")
        .values_list("id", "sha256", "split", "annotation__boxes")
    )
    if not rows:
        raise ValidationFailed(
            "There are no approved images to freeze.", code="nothing_to_freeze", details={"dataset": dataset.slug}
        )
    classes = list(dataset.classes)
    split_counts = Counter()
    box_counts = Counter()
    for _, _, split, boxes in rows:
        split_counts[split] += 1
        for box in boxes or []:
            cid = box["class_id"]
            box_counts[classes[cid] if cid < len(classes) else str(cid)] += 1
    last = DatasetVersion.objects.filter(dataset=dataset).order_by("-number").values_list("number", flat=True).first()
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=(last or 0) + 1,
        classes=classes,
        counts={
            "images": {s: split_counts.get(s, 0) for s in SPLITS},
            "boxes": {name: box_counts.get(name, 0) for name in classes},
        },
        image_count=len(rows),
        manifest_sha256=_manifest_sha256(classes, [(sha, split, boxes or []) for _, sha, split, boxes in rows]),
        created_by=user if getattr(user, "pk", None) else None,
        note=note[:200],
    )
    VersionItem.objects.bulk_create(
        (VersionItem(version=version, image_id=pk, split=split, boxes=boxes or []) for pk, _, split, boxes in rows),
        batch_size=1000,
    )
    broadcast(f"dataset.{dataset.slug}", "version_frozen", {"id": version.pk, "number": version.number})
    return version


def _version_rows(version: DatasetVersion):
    return (
        VersionItem.objects.filter(version=version)
        .order_by("id")
        .values_list(
            "image__sha256", "image__storage_path", "image__width", "image__height", "split", "boxes", "image_id"
        )
        .iterator(chunk_size=2000)
    )


def _local_path(name: str) -> str | None:
    try:
        return default_storage.path(name)
    except NotImplementedError:  # S3 and other remote storages
        return None


def _place(name: str, target: Path, link: bool) -> str:
    """Put a stored file at ``target``: hard link, else symlink, else copy (remote storage: download)."""
    source = _local_path(name)
    if target.exists() or target.is_symlink():
        target.unlink()
    if source and link:
        try:
            os.link(source, target)
            return "hardlink"
        except OSError:
            try:
                os.symlink(source, target)
                return "symlink"
            except OSError:
                pass
    if source:
        shutil.copyfile(source, target)
        return "copy"
    with default_storage.open(name, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    return "download"


def _yolo_line(class_id: int, box, width: int, height: int) -> str:
    x, y, w, h = box
    return f"{class_id} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"


def _data_yaml(classes: list[str], present: set[str], root: str | None) -> str:
    lines = [] if root is None else [f"path: {json.dumps(root)}"]
    lines.append("train: images/train")
    # ultralytics needs a validation set: with none frozen, validate on train (stated here, not hidden).
    lines.append("val: images/val" if "val" in present else "val: images/train  # no val images in this version")
    if "test" in present:
        lines.append("test: images/test")
    lines.append(f"nc: {len(classes)}")
    lines.append("names:")
    lines.extend(f"  {i}: {json.dumps(name)}" for i, name in enumerate(classes))
    return "\n".join(lines) + "\n"


def version_materialize(*, version: DatasetVersion, dest_dir, link: bool = True) -> Path:
    """Lay a frozen version out for ultralytics (images/{split}, labels/{split}, data.yaml) with links, not copies;
    labels are written in the same single pass. Returns the path of data.yaml."""
    dest = Path(dest_dir).resolve()
    for sub in ("images", "labels"):
        if (dest / sub).is_dir():
            shutil.rmtree(dest / sub)  # leftovers of another version must not leak into this one
    for split in SPLITS:
        (dest / "images" / split).mkdir(parents=True, exist_ok=True)
        (dest / "labels" / split).mkdir(parents=True, exist_ok=True)
    present = set()
    for sha, name, width, height, split, boxes, _ in _version_rows(version):
        present.add(split)
        ext = name.rsplit(".", 1)[-1]
        _place(name, dest / "images" / split / f"{sha}.{ext}", link)
        lines = [_yolo_line(b["class_id"], b["box"], width, height) for b in boxes]
        (dest / "labels" / split / f"{sha}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = dest / "data.yaml"
    data_yaml.write_text(_data_yaml(list(version.classes), present, str(dest)))
    return data_yaml


def version_export_zip(*, version: DatasetVersion, fmt: str) -> Path:
    """Write a version as a zip (``yolo``: what ultralytics trains on; ``coco``: Roboflow's COCO layout with
    ``<split>/_annotations.coco.json``) to a temporary file and return its path; the caller deletes it."""
    if fmt not in ("yolo", "coco"):
        raise ValidationFailed("Export format must be yolo or coco.", code="invalid_format", details={"format": fmt})
    handle, name = tempfile.mkstemp(prefix=f"vm-export-{version.pk}-", suffix=".zip")
    os.close(handle)
    path = Path(name)
    classes = list(version.classes)
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            if fmt == "yolo":
                _export_yolo(archive, version, classes)
            else:
                _export_coco(archive, version, classes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


EXPORT_INLINE_MAX_IMAGES = 5000  # bigger versions are zipped by a Celery task while the page waits


def version_export_name(*, version: DatasetVersion, fmt: str) -> str:
    """Where a version's export zip is kept in storage: frozen versions never change, so one zip serves all."""
    return f"exports/{version.dataset.slug}/v{version.number}-{version.manifest_sha256[:12]}-{fmt}.zip"


def version_export_store(*, version: DatasetVersion, fmt: str) -> str:
    """Build a version's export zip once and keep it in default storage; returns its storage name."""
    name = version_export_name(version=version, fmt=fmt)
    if default_storage.exists(name):
        return name
    path = version_export_zip(version=version, fmt=fmt)
    try:
        with open(path, "rb") as handle:
            _store(name, File(handle, name=name))
    finally:
        path.unlink(missing_ok=True)
    return name


def version_export_prepare(*, version: DatasetVersion, fmt: str) -> str | None:
    """The storage name of the export zip when it is ready (small versions are built now); otherwise queue
    ``version_export_task`` once and return None (the page polls)."""
    if fmt not in ("yolo", "coco"):
        raise ValidationFailed("Export format must be yolo or coco.", code="invalid_format", details={"format": fmt})
    name = version_export_name(version=version, fmt=fmt)
    if default_storage.exists(name):
        return name
    if version.image_count <= EXPORT_INLINE_MAX_IMAGES:
        return version_export_store(version=version, fmt=fmt)
    from django.core.cache import cache

    if cache.add(f"datasets:export:{name}", 1, timeout=600):  # one task per zip, however often the page polls
        from apps.datasets.tasks import version_export_task

        transaction.on_commit(lambda: version_export_task.delay(version.pk, fmt))
    return None


def _zip_stored_file(archive: zipfile.ZipFile, storage_name: str, arcname: str) -> None:
    # Images are already compressed: store them as they are.
    with (
        default_storage.open(storage_name, "rb") as src,
        archive.open(zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0)), "w", force_zip64=True) as dst,
    ):
        shutil.copyfileobj(src, dst, CHUNK)


def _export_yolo(archive: zipfile.ZipFile, version: DatasetVersion, classes: list[str]) -> None:
    present = set()
    for sha, name, width, height, split, boxes, _ in _version_rows(version):
        present.add(split)
        ext = name.rsplit(".", 1)[-1]
        _zip_stored_file(archive, name, f"images/{split}/{sha}.{ext}")
        lines = [_yolo_line(b["class_id"], b["box"], width, height) for b in boxes]
        archive.writestr(f"labels/{split}/{sha}.txt", "\n".join(lines) + ("\n" if lines else ""))
    archive.writestr("data.yaml", _data_yaml(classes, present, None))


def _export_coco(archive: zipfile.ZipFile, version: DatasetVersion, classes: list[str]) -> None:
    docs = {
        split: {
            "info": {"description": f"{version.dataset.slug} v{version.number}", "version": str(version.number)},
            "categories": [{"id": i + 1, "name": n, "supercategory": "none"} for i, n in enumerate(classes)],
            "images": [],
            "annotations": [],
        }
        for split in SPLITS
    }
    annotation_id = 0
    for sha, name, width, height, split, boxes, image_id in _version_rows(version):
        ext = name.rsplit(".", 1)[-1]
        file_name = f"{sha}.{ext}"
        _zip_stored_file(archive, name, f"{split}/{file_name}")
        doc = docs[split]
        doc["images"].append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for b in boxes:
            annotation_id += 1
            x, y, w, h = b["box"]
            doc["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": b["class_id"] + 1,
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 3),
                    "iscrowd": 0,
                }
            )
    for split, doc in docs.items():
        if doc["images"]:
            archive.writestr(f"{split}/_annotations.coco.json", json.dumps(doc))


# --- import ----------------------------------------------------------------------------------------------------


def dataset_import(
    *,
    dataset: Dataset,
    path,
    approve: bool = False,
    keep_split: bool = False,
    user=None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Import a zip or folder in YOLO (incl. Roboflow's train/valid/test layout) or COCO JSON form.
    A hostile archive (zip slip, zip bomb) is refused whole; a bad image or label line inside is reported and skipped.
    Returns the report."""
    path = Path(path)
    if not path.exists():
        raise ValidationFailed(f"{path} does not exist.", code="import_not_found")
    with tempfile.TemporaryDirectory(prefix="vm-import-") as scratch:
        if path.is_dir():
            root = path
        else:
            root = Path(scratch) / "x"
            formats.safe_extract(path, root, max_bytes=settings.MAX_IMPORT_UNCOMPRESSED_BYTES)
        source = formats.detect(root)
        report = {
            "format": source.kind,
            "line_policy": "a bad label line is skipped and reported; the file's other lines are kept",
            "images_total": len(source.items),
            "imported": 0,
            "duplicates": 0,
            "annotated": 0,
            "skipped": [],
            "label_errors": list(source.label_errors),
            "classes_added": [],
            "status": Image.Status.APPROVED if approve else Image.Status.SUBMITTED,
        }
        class_map = _import_class_map(dataset, source.classes, report)
        if progress:
            progress(0, len(source.items))
        for done, item in enumerate(source.items, start=1):
            _import_one(dataset, item, class_map, approve, keep_split, user, report)
            if progress:
                progress(done, len(source.items))
    for key in ("skipped", "label_errors"):
        if len(report[key]) > 1000:
            report[f"{key}_truncated"] = len(report[key]) - 1000
            report[key] = report[key][:1000]
    return report


def _import_class_map(dataset: Dataset, names: list[str] | None, report: dict) -> dict[int, int]:
    """Source class ids -> dataset class ids, by name; names the dataset lacks are appended to it."""
    if names is None:  # labels without class names: ids are the dataset's own
        return {i: i for i in range(len(dataset.classes))}
    current = list(Dataset.objects.filter(pk=dataset.pk).values_list("classes", flat=True).get())
    mapping = {}
    for source_id, name in enumerate(names):
        if name is None:
            continue
        if name not in current:
            dataset_class_add(dataset=dataset, name=name)
            current.append(name)
            report["classes_added"].append(name)
        mapping[source_id] = current.index(name)
    dataset.refresh_from_db(fields=["classes"])
    return mapping


def _import_one(dataset, item: "formats.SourceItem", class_map, approve, keep_split, user, report) -> None:
    try:
        with open(item.image_path, "rb") as handle:
            image, created = image_ingest(dataset=dataset, fileobj=handle, source=Image.Source.IMPORT, uploaded_by=user)
    except DomainError as exc:
        report["skipped"].append({"file": item.name, "code": exc.code, "message": exc.message})
        return
    except OSError as exc:
        report["skipped"].append({"file": item.name, "code": "unreadable", "message": str(exc)})
        return
    if created:
        report["imported"] += 1
    else:
        report["duplicates"] += 1
    if keep_split and item.split:
        image_split_pin(image=image, split=item.split)
    if item.boxes is None:  # an image without a label file stays unlabeled
        return
    if not created and Annotation.objects.filter(image=image, version__gt=0).exists():
        return  # someone already labeled this image here: an import never overwrites their work
    boxes = []
    for entry in item.boxes:
        class_id = class_map.get(entry.class_id)
        if class_id is None:
            report["label_errors"].append(
                {"file": entry.file, "line": entry.line, "code": "unknown_class", "message": f"class {entry.class_id}"}
            )
            continue
        if entry.normalised:
            cx, cy, w, h = entry.values
            x, y, w, h = (cx - w / 2) * image.width, (cy - h / 2) * image.height, w * image.width, h * image.height
        else:
            x, y, w, h = entry.values
        try:
            boxes.extend(
                boxes_validate(
                    boxes=[{"class_id": class_id, "box": [x, y, w, h]}],
                    class_count=len(dataset.classes),
                    width=image.width,
                    height=image.height,
                )
            )
        except ValidationFailed as exc:
            report["label_errors"].append(
                {"file": entry.file, "line": entry.line, "code": "box_outside_image", "message": exc.message}
            )
    status = Image.Status.APPROVED if approve else Image.Status.SUBMITTED
    annotation_set(image=image, boxes=boxes[:MAX_BOXES], user=user, status=status)
    report["annotated"] += 1


# --- import jobs (Celery) --------------------------------------------------------------------------------------


def import_job_create(
    *, dataset: Dataset, fileobj, filename: str, user=None, approve: bool = False, keep_split: bool = False
) -> ImportJob:
    """Keep the uploaded archive in storage and queue its import; the job row is what the page watches."""
    if not filename.lower().endswith(".zip"):
        raise ValidationFailed("Upload a .zip archive.", code="not_a_zip", details={"file": filename})
    upload_name = default_storage.save(
        f"imports/{timezone.now():%Y%m%d}/{hashlib.sha256(os.urandom(16)).hexdigest()[:16]}.zip", fileobj
    )
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                dataset=dataset,
                upload_name=upload_name,
                original_name=os.path.basename(filename)[:255],
                approve=approve,
                keep_split=keep_split,
                created_by=user if getattr(user, "pk", None) else None,
            )
            from apps.datasets.tasks import dataset_import_task

            transaction.on_commit(lambda: dataset_import_task.delay(job.pk))
    except BaseException:
        default_storage.delete(upload_name)
        raise
    return job


def import_job_run(*, job: ImportJob) -> ImportJob:
    """Run a queued import: fetch the archive, import it, record progress and the report."""
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, started_at=timezone.now())
    topic = f"dataset.{job.dataset.slug}"

    def progress(done: int, total: int) -> None:
        ImportJob.objects.filter(pk=job.pk).update(done=done, total=total)
        if done == total or done % 10 == 0:
            broadcast(topic, "import_progress", {"job": job.pk, "done": done, "total": total})

    try:
        with tempfile.TemporaryDirectory(prefix="vm-importjob-") as scratch:
            local = _local_path(job.upload_name)
            if local is None:
                local = os.path.join(scratch, "upload.zip")
                with default_storage.open(job.upload_name, "rb") as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            report = dataset_import(
                dataset=job.dataset,
                path=local,
                approve=job.approve,
                keep_split=job.keep_split,
                user=job.created_by,
                progress=progress,
            )
    except DomainError as exc:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            error=exc.message,
            report={"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            finished_at=timezone.now(),
        )
    except Exception as exc:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    else:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.SUCCEEDED, report=report, finished_at=timezone.now()
        )
    finally:
        try:
            default_storage.delete(job.upload_name)
        except Exception:  # noqa: BLE001 - the archive is scratch
            log.warning("could not delete %s", job.upload_name, exc_info=True)
    job.refresh_from_db()
    broadcast_status = {"job": job.pk, "status": job.status, "done": job.done, "total": job.total}
    broadcast(topic, "import_finished", broadcast_status)
    return job
