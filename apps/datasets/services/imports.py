"""Importing YOLO (Roboflow's layout too) and COCO data, directly or as a queued job."""

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from apps.datasets import formats
from apps.datasets.boxes import MAX_BOXES, boxes_validate
from apps.datasets.models import Annotation, Dataset, Image, ImportJob
from apps.datasets.services.annotations import annotation_set
from apps.datasets.services.datasets import dataset_class_add
from apps.datasets.services.ingest import image_ingest
from apps.datasets.services.splits import image_split_pin
from apps.datasets.storage import CHUNK, local_path
from vectormlops.errors import DomainError, ValidationFailed
from vectormlops.events import broadcast

log = logging.getLogger(__name__)


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
            local = local_path(job.upload_name)
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
