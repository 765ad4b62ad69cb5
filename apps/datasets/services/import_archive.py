"""Importing one zip or folder in every layout ``formats`` reads: unpack it safely, detect the layout, and apply its
images and boxes to a dataset under the duplicate rule. Returns the report that an import job keeps."""

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.datasets import formats
from apps.datasets.boxes import MAX_BOXES, boxes_validate
from apps.datasets.models import Annotation, Dataset, Image
from apps.datasets.services.annotations import annotation_set
from apps.datasets.services.datasets import dataset_class_add
from apps.datasets.services.ingest import image_ingest
from apps.datasets.services.splits import image_split_pin
from vectormlops.errors import DomainError, ValidationFailed

REPORT_MAX_FILES = 10_000
# Files are applied in batches, each in one transaction with what a rollback needs of them (``progress``): a process
# killed between batches leaves rows that its job's persisted undo list describes exactly.
BATCH_FILES = 25
BATCH_SECONDS = 1.0
MERGE_TOLERANCE_PX = 1.0
DUPLICATE_RULE = (
    "Byte-identical images under several names are one image. When their boxes agree (each within 1 px, same class) "
    "or one file's boxes contain all of another's, the fuller set is kept ('merged'); otherwise the first file in "
    "the source's order keeps its boxes and the others are listed as 'conflict' with what they had. An image "
    "already in the dataset keeps boxes someone saved there."
)


def dataset_import(
    *,
    dataset: Dataset,
    path,
    approve: bool = False,
    keep_split: bool = False,
    user=None,
    progress: Callable[[int, int, dict], None] | None = None,
    job_id: int | None = None,
    resume: dict | None = None,
) -> dict:
    """Import a zip or folder in any layout ``formats.detect`` reads. A hostile archive (zip slip, bomb, past the
    time limit while unpacking) is refused whole; a bad image or box inside is reported and skipped. Returns the
    report: counts, one entry per file, and what a rollback needs. Running past the time limit while importing
    stops there; the report says so and what was imported can be rolled back.

    ``progress(done, total, partial)`` is called inside the transaction of each batch of files, with what a rollback
    needs of everything applied so far (``partial``: ``undo`` and ``classes_added``): an import job stores it in the
    same transaction, so a killed import can be rolled back exactly. ``resume`` is such a ``partial`` of an earlier,
    interrupted run of the same job (a redelivery): its entries are kept."""
    path = Path(path)
    if not path.exists():
        raise ValidationFailed(f"{path} does not exist.", code="import_not_found")
    deadline = formats.Deadline(settings.IMPORT_TIME_LIMIT_S)
    with tempfile.TemporaryDirectory(prefix="vm-import-") as scratch:
        if path.is_dir():
            root = path
        else:
            root = Path(scratch) / "x"
            formats.safe_extract(path, root, max_bytes=settings.MAX_IMPORT_UNCOMPRESSED_BYTES, deadline=deadline)
        source = formats.detect(root, deadline)
        report = {
            "format": source.kind,
            "line_policy": "a bad label line is skipped and reported; the file's other lines are kept",
            "duplicate_rule": DUPLICATE_RULE,
            "images_total": len(source.items),
            "imported": 0,
            "duplicates": 0,
            "merged": 0,
            "conflicts": 0,
            "annotated": 0,
            "files": [],
            "skipped": [],
            "label_errors": list(source.label_errors),
            "notes": list(source.notes),
            "classes_added": [],
            "status": Image.Status.APPROVED if approve else Image.Status.SUBMITTED,
            "undo": [],
        }
        run = _ImportRun(dataset, source, report, approve=approve, keep_split=keep_split, user=user, job_id=job_id)
        run.resume(resume or {})
        total, items = len(source.items), iter(source.items)
        if progress:
            progress(0, total, run.partial())
        done = 0
        while done < total and "error" not in report:
            with transaction.atomic():
                started = time.monotonic()
                for item in items:
                    try:
                        deadline.check()
                    except ValidationFailed as exc:
                        report["error"] = {"code": exc.code, "message": exc.message, "details": exc.details}
                        break
                    run.one(item)
                    done += 1
                    if done % BATCH_FILES == 0 or time.monotonic() - started >= BATCH_SECONDS:
                        break
                if progress:
                    progress(done, total, run.partial())
        report.update(run.partial())
    for key, limit in (("files", REPORT_MAX_FILES), ("skipped", 1000), ("label_errors", 1000)):
        if len(report[key]) > limit:
            report[f"{key}_truncated"] = len(report[key]) - limit
            report[key] = report[key][:limit]
    return report


def _same_box(a: dict, b: dict) -> bool:
    return a["label"] == b["label"] and all(
        abs(u - v) <= MERGE_TOLERANCE_PX for u, v in zip(a["box"], b["box"], strict=True)
    )


def _contains(outer: list[dict], inner: list[dict]) -> bool:
    return all(any(_same_box(box, other) for other in outer) for box in inner)


class _ImportRun:
    """The state of one import: the dataset's classes as they grow, and the images this import has labelled
    (byte-identical files under other names are compared against them)."""

    def __init__(self, dataset, source, report, *, approve, keep_split, user, job_id):
        self.job_id = job_id
        self.dataset = dataset
        self.source = source
        self.report = report
        self.keep_split = keep_split
        self.user = user
        self.status = Image.Status.APPROVED if approve else Image.Status.SUBMITTED
        self.classes = list(Dataset.objects.filter(pk=dataset.pk).values_list("classes", flat=True).get())
        self.met: dict[int, list] = {}  # image id -> [file whose boxes it has, those boxes, may this import label it]
        self.annotated: set[int] = set()
        self.undo: dict[int, dict] = {}  # image id -> what a rollback needs

    def resume(self, partial: dict) -> None:
        """Take over what an earlier, interrupted run of the same job recorded (its images are this job's own)."""
        for entry in partial.get("undo") or []:
            self.undo[entry["image"]] = dict(entry)
        self.report["classes_added"] += [c for c in partial.get("classes_added") or [] if c not in self.classes_added]

    @property
    def classes_added(self) -> list:
        return self.report["classes_added"]

    def partial(self) -> dict:
        """What a rollback needs of everything applied so far."""
        return {"undo": list(self.undo.values()), "classes_added": list(self.classes_added)}

    def error(self, entry, code: str, message: str) -> None:
        self.report["label_errors"].append({"file": entry.file, "line": entry.line, "code": code, "message": message})

    def class_id(self, box: dict) -> int | None:
        """The dataset's id for a box's class; a class the dataset lacks is added now, when a box is saved with it."""
        name = box["label"]
        if isinstance(name, int):  # YOLO ids without class names: the dataset's own ids, checked already
            return name
        if name not in self.classes:
            try:
                dataset_class_add(dataset=self.dataset, name=name)
            except ValidationFailed as exc:
                self.error(box["entry"], "unknown_class", f"class {name!r} cannot be added: {exc.message}")
                return None
            self.classes.append(name)
            self.report["classes_added"].append(name)
        return self.classes.index(name)

    def boxes(self, item, image) -> list[dict]:
        """A file's boxes in pixels, each with its class name (or, for YOLO ids without names, the dataset's id)."""
        boxes = []
        for entry in item.boxes:
            if entry.mode == "yolo":
                cx, cy, w, h = entry.values
                x, y = (cx - w / 2) * image.width, (cy - h / 2) * image.height
                w, h = w * image.width, h * image.height
            elif entry.mode == "fraction":
                x, y, w, h = entry.values
                x, y, w, h = x * image.width, y * image.height, w * image.width, h * image.height
            else:
                x, y, w, h = entry.values
            try:
                (checked,) = boxes_validate(
                    boxes=[{"class_id": 0, "box": [x, y, w, h]}], class_count=1, width=image.width, height=image.height
                )
            except ValidationFailed as exc:
                self.error(entry, "box_outside_image", exc.message)
                continue
            label = entry.label
            if isinstance(label, int) and self.source.classes is not None:
                label = self.source.classes[label]
            elif isinstance(label, int) and label >= len(self.classes):
                self.error(entry, "unknown_class", f"class {label} is not one of the dataset's {len(self.classes)}")
                continue
            boxes.append({"label": label, "box": checked["box"], "entry": entry})
        if len(boxes) > MAX_BOXES:
            self.report["notes"].append({"file": item.name, "note": f"only the first {MAX_BOXES} boxes kept"})
        return boxes[:MAX_BOXES]

    def label_name(self, box: dict) -> str:
        return box["label"] if isinstance(box["label"], str) else self.classes[box["label"]]

    def file(self, item, result: str, **fields) -> None:
        self.report["files"].append({"file": item.name, "result": result, **fields})

    def one(self, item) -> None:
        report = self.report
        try:
            with open(item.image_path, "rb") as handle:
                image, created = image_ingest(
                    dataset=self.dataset,
                    fileobj=handle,
                    source=Image.Source.IMPORT,
                    uploaded_by=self.user,
                    meta={"import_job": self.job_id} if self.job_id else {},
                )
        except DomainError as exc:
            report["skipped"].append({"file": item.name, "code": exc.code, "message": exc.message})
            self.file(item, "skipped", code=exc.code, message=exc.message)
            return
        except OSError as exc:
            report["skipped"].append({"file": item.name, "code": "unreadable", "message": str(exc)})
            self.file(item, "skipped", code="unreadable", message=str(exc))
            return
        # An image this job stored in an earlier, interrupted run (a killed worker's redelivery) is this job's own.
        created = created or bool(self.job_id and (image.meta or {}).get("import_job") == self.job_id)
        boxes = None if item.boxes is None else self.boxes(item, image)
        if image.pk in self.met:
            report["duplicates"] += 1
            self.again(item, image, boxes)
            return
        if created:
            report["imported"] += 1
            self.undo[image.pk] = {"image": image.pk, "created": True, "status": image.status, "version": 0}
        else:
            report["duplicates"] += 1
        if self.keep_split and item.split:
            image_split_pin(image=image, split=item.split)
        writable = created or not Annotation.objects.filter(image=image, version__gt=0).exists()
        self.met[image.pk] = [item.name, None, writable]
        if boxes is not None and writable:
            self.label(item, image, boxes)
        if created:
            self.file(item, "imported", image=image.pk, boxes=None if boxes is None else len(boxes))
        elif boxes is not None and writable:
            self.file(
                item, "already_in_dataset", image=image.pk, boxes=len(boxes), message="unlabelled there: boxes added"
            )
        else:
            message = "no boxes in the source" if boxes is None else "boxes saved there are kept, these are not used"
            self.file(item, "already_in_dataset", image=image.pk, message=message)

    def label(self, item, image, boxes) -> None:
        before = {"image": image.pk, "created": False, "status_before": image.status}
        ids = [self.class_id(box) for box in boxes]
        saved = [{"class_id": cid, "box": box["box"]} for cid, box in zip(ids, boxes, strict=True) if cid is not None]
        annotation = annotation_set(image=image, boxes=saved, user=self.user, status=self.status)
        self.undo.setdefault(image.pk, before).update(version=annotation.version, status=self.status)
        self.met[image.pk][:2] = [item.name, boxes]
        if image.pk not in self.annotated:
            self.annotated.add(image.pk)
            self.report["annotated"] += 1

    def again(self, item, image, boxes) -> None:
        """A file byte-identical to one met earlier in this import: the duplicate rule (DUPLICATE_RULE)."""
        first, kept, writable = self.met[image.pk]
        same = f"same image as {first}"
        if boxes is None or (kept is not None and _contains(kept, boxes)):
            if boxes is None or kept is None or _contains(boxes, kept):
                self.file(item, "duplicate", image=image.pk, duplicate_of=first, message=same)
            else:
                self.report["merged"] += 1
                message = f"{same}; its {len(boxes)} boxes are all among the {len(kept)} kept"
                self.file(item, "merged", image=image.pk, duplicate_of=first, boxes=len(boxes), message=message)
            return
        if writable and (kept is None or _contains(boxes, kept)):
            self.report["merged"] += 1
            message = f"{same}; its {len(boxes)} boxes contain those of {first} and are kept"
            self.label(item, image, boxes)
            self.file(item, "merged", image=image.pk, duplicate_of=first, boxes=len(boxes), message=message)
            return
        self.report["conflicts"] += 1
        kept_text = f"{first}'s {len(kept)} boxes are kept" if kept is not None else "the boxes saved there are kept"
        self.file(
            item,
            "conflict",
            image=image.pk,
            duplicate_of=first,
            boxes=len(boxes),
            message=f"{same} with other boxes: {kept_text}, these {len(boxes)} are not",
            boxes_not_used=[{"label": self.label_name(b), "box": b["box"]} for b in boxes[:50]],
        )
