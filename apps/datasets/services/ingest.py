"""Image ingestion: streamed, hashed, verified, described and stored once by content."""

import hashlib
import logging
import tempfile
from datetime import datetime

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from apps.datasets.imaging import inspect_image
from apps.datasets.models import Dataset, Image
from apps.datasets.services.splits import split_for
from apps.datasets.signals import image_ingested
from apps.datasets.storage import CHUNK, chunks_within, store_once
from vectormlops.errors import PayloadTooLarge, ValidationFailed
from vectormlops.events import broadcast_soon
from vectormlops.inputs import datetime_parse

log = logging.getLogger(__name__)


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
        message = f"The file is more than the limit of {limit} bytes."
        for chunk in chunks_within(chunks, limit=limit, message=message, code="file_too_large"):
            size += len(chunk)
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


def _parse_captured_at(value) -> datetime | None:
    return None if value in (None, "") else datetime_parse(value)


ROBOT_SOURCES = {
    Image.Source.CAMERA,
    Image.Source.FEEDBACK,
    Image.Source.LOW_CONFIDENCE,
    Image.Source.SHADOW_DISAGREEMENT,
}
PERSON_SOURCES = ROBOT_SOURCES | {Image.Source.UPLOAD}


def image_upload_source(*, requested: str | None, by_robot: bool) -> str:
    """The source an API upload is recorded with: the one named, else camera (robots) or upload (people).
    A robot cannot call its frames a person's upload; imports are never uploads."""
    source = requested or (Image.Source.CAMERA if by_robot else Image.Source.UPLOAD)
    if source not in (ROBOT_SOURCES if by_robot else PERSON_SOURCES):
        raise ValidationFailed(f"Unknown source {source!r}.", code="invalid_source", details={"source": source})
    return source


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
        # No look-up first: a new image (the common case) costs one INSERT, and a duplicate meets the unique
        # constraint below. Its stored files are checked on the way: one left truncated is replaced by these bytes.
        facts = inspect_image(spool.name, max_pixels=settings.MAX_IMAGE_PIXELS)
        storage_path = f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{facts.ext}"
        thumbnail_path = f"thumbs/{sha256[:2]}/{sha256[2:4]}/{sha256}.jpg"
        spool.seek(0)
        wrote_image = store_once(storage_path, File(spool, name=storage_path), sha256=sha256, size=size)
        wrote_thumb = store_once(thumbnail_path, ContentFile(facts.thumbnail, name=thumbnail_path))
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
        # These bytes are already in the dataset (sent again, or by a concurrent upload): theirs is the image.
        existing = Image.objects.filter(dataset=dataset, sha256=sha256).first()
        if existing is None:
            raise
        return existing, False
    except BaseException:
        image_files_forget(sha256, storage_path if wrote_image else None, thumbnail_path if wrote_thumb else None)
        raise
    return image, True


def image_files_forget(sha256: str, *names) -> None:
    """Remove stored files of an image whose row was not written (or was rolled back), unless another row uses them."""
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
    broadcast_soon(  # off the request: one upload must not wait for a Redis round trip
        f"dataset.{image.dataset.slug}",
        "image_ingested",
        {"id": image.pk, "split": image.split, "status": image.status, "source": image.source},
    )
