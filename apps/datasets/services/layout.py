"""A frozen version on disk or in a zip: the YOLO layout ultralytics trains on, and COCO for other tools."""

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction

from apps.datasets.models import DatasetVersion
from apps.datasets.selectors import version_rows
from apps.datasets.services.splits import SPLITS
from apps.datasets.storage import CHUNK, place_stored_file, store_once
from vectormlops.errors import ValidationFailed


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
    for sha, name, width, height, split, boxes, _ in version_rows(version):
        present.add(split)
        ext = name.rsplit(".", 1)[-1]
        place_stored_file(name, dest / "images" / split / f"{sha}.{ext}", link)
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
            store_once(name, File(handle, name=name))
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
    for sha, name, width, height, split, boxes, _ in version_rows(version):
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
    for sha, name, width, height, split, boxes, image_id in version_rows(version):
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
