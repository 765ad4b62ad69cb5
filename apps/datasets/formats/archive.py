"""Unpacking an untrusted zip: refused whole on zip slip, a bomb (declared or real size) or a corrupt entry;
links are never created; the import's time limit is checked per entry."""

import stat
import zipfile
from functools import partial
from pathlib import Path

from apps.datasets.formats.common import NO_DEADLINE, Deadline, unsafe_name
from apps.datasets.storage import CHUNK, chunks_within
from vectormlops.errors import PayloadTooLarge, ValidationFailed


def safe_extract(archive_path: Path, dest: Path, *, max_bytes: int, deadline: Deadline = NO_DEADLINE) -> None:
    """Extract a zip, refusing the whole archive on an entry that escapes ``dest`` (zip slip) or when the content
    grows past ``max_bytes`` (zip bomb: checked on the declared sizes first, then on the bytes really written)."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValidationFailed("The file is not a readable zip archive.", code="bad_archive") from exc
    with archive:
        members = archive.infolist()
        for info in members:
            if unsafe_name(info.filename):
                raise ValidationFailed(
                    f"The archive entry {info.filename!r} points outside the archive.",
                    code="zip_slip",
                    details={"entry": info.filename},
                )
        declared = sum(info.file_size for info in members)
        if declared > max_bytes:
            raise PayloadTooLarge(
                f"The archive unpacks to {declared} bytes, more than the limit of {max_bytes}.",
                code="archive_too_large",
                details={"max_bytes": max_bytes, "declared_bytes": declared},
            )
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        for info in members:
            if info.is_dir():
                continue
            deadline.check()
            if stat.S_ISLNK(info.external_attr >> 16):
                continue  # never follow links planted in an archive
            target = (root / info.filename.replace("\\", "/")).resolve()
            if root not in target.parents:
                raise ValidationFailed(
                    f"The archive entry {info.filename!r} points outside the archive.",
                    code="zip_slip",
                    details={"entry": info.filename},
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    for chunk in chunks_within(
                        iter(partial(src.read, CHUNK), b""),
                        limit=max_bytes,
                        already=written,
                        message=f"The archive unpacks to more than the limit of {max_bytes} bytes.",
                        code="archive_too_large",
                    ):
                        written += len(chunk)
                        dst.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
                raise ValidationFailed(
                    f"The archive entry {info.filename!r} is corrupt ({exc}).",
                    code="bad_archive",
                    details={"entry": info.filename},
                ) from exc
