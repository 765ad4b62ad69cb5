"""A frozen version on disk (the YOLO layout ultralytics trains on) or in a zip in any export format."""

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction

from apps.datasets.formats.writers import EXPORT_FORMATS, ExportItem, data_yaml, write_export, yolo_line
from apps.datasets.models import DatasetVersion
from apps.datasets.selectors import version_rows
from apps.datasets.services.splits import SPLITS
from apps.datasets.storage import CHUNK, place_stored_file, store_once
from vectormlops.errors import ValidationFailed


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
        yolo_image_write(
            root=dest, split=split, storage_name=name, sha256=sha, width=width, height=height, boxes=boxes, link=link
        )
    yaml_path = dest / "data.yaml"
    yaml_path.write_text(data_yaml(list(version.classes), present, str(dest)))
    return yaml_path


def yolo_image_write(
    *, root: Path, split: str, storage_name: str, sha256: str, width: int, height: int, boxes, link: bool = True
) -> Path:
    """One image of a YOLO layout: the stored file at ``images/<split>/<sha256>.<ext>`` (linked when storage is a
    local disk) and its boxes, normalised, at ``labels/<split>/<sha256>.txt``. Returns the image's path."""
    for sub in ("images", "labels"):
        (root / sub / split).mkdir(parents=True, exist_ok=True)
    target = root / "images" / split / f"{sha256}.{storage_name.rsplit('.', 1)[-1]}"
    place_stored_file(storage_name, target, link)
    lines = [yolo_line(b["class_id"], b["box"], width, height) for b in boxes]
    (root / "labels" / split / f"{sha256}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return target


def yolo_data_yaml_write(
    root: Path, *, classes: list[str], train: str, val: str, test: str | None = None, name: str = "data.yaml"
) -> Path:
    """A data.yaml whose splits are any folders or image lists under ``root``; returns its path."""
    lines = [f"path: {json.dumps(str(root))}", f"train: {json.dumps(train)}", f"val: {json.dumps(val)}"]
    if test is not None:
        lines.append(f"test: {json.dumps(test)}")
    lines.append(f"nc: {len(classes)}")
    lines.append("names:")
    lines.extend(f"  {i}: {json.dumps(class_name)}" for i, class_name in enumerate(classes))
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ValidationFailed(
            f"Export format must be one of {', '.join(EXPORT_FORMATS)}.",
            code="invalid_format",
            details={"format": fmt, "formats": list(EXPORT_FORMATS)},
        )


def version_export_zip(*, version: DatasetVersion, fmt: str) -> Path:
    """Write a version as a zip in one of ``EXPORT_FORMATS`` (see ``formats.writers``) to a temporary file and
    return its path; the caller deletes it."""
    _check_format(fmt)
    handle, name = tempfile.mkstemp(prefix=f"vm-export-{version.pk}-", suffix=".zip")
    os.close(handle)
    path = Path(name)
    items = (ExportItem(*row) for row in version_rows(version))
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:

            def add_image(storage_name: str, arcname: str) -> None:
                _zip_stored_file(archive, storage_name, arcname)

            title = f"{version.dataset.slug} v{version.number}"
            write_export(fmt, archive, items, list(version.classes), add_image, title)
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
    _check_format(fmt)
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
