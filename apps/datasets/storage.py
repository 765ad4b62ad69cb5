"""Stored files (local disk or S3-like storage) and the local disk: where a stored file is, putting one on disk,
storing content-addressed files once, hashing files in chunks."""

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from django.core.files.storage import default_storage

from vectormlops.errors import PayloadTooLarge

CHUNK = 1024 * 1024


def chunks_within(chunks, *, limit: int, message: str, code: str, already: int = 0):
    """``chunks`` passed through until they (after ``already`` bytes counted before them) pass ``limit`` bytes: then
    a 413 ``code`` with ``message``. A copy stops at the limit, not at the end of a file that claims to be small."""
    size = already
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(message, code=code, details={"max_bytes": limit})
        yield chunk


def local_path(name: str) -> str | None:
    """The local path of a stored file, or None when the storage is remote (S3 and others)."""
    try:
        return default_storage.path(name)
    except NotImplementedError:  # S3 and other remote storages
        return None


def place_stored_file(name: str, target: Path, link: bool) -> str:
    """Put a stored file at ``target``: hard link, else symlink, else copy (remote storage: download)."""
    source = local_path(name)
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


def stored_file_on_disk(name: str, folder) -> str:
    """A local path to read a stored file from: the file itself on local disk, else a download into ``folder``."""
    path = local_path(name)
    if path is None:
        target = Path(folder) / Path(name).name
        place_stored_file(name, target, link=False)
        path = str(target)
    return path


class StoredFileCorrupt(OSError):
    """What was written does not read back as the bytes given (a full disk, a failing device or bucket)."""


def _digest(content) -> tuple[str, int]:
    """sha256 and size of a file object's bytes, from the start; leaves it at the start."""
    digest = hashlib.sha256()
    size = 0
    content.seek(0)
    for chunk in content.chunks(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    content.seek(0)
    return digest.hexdigest(), size


def stored_file_matches(name: str, sha256: str, size: int) -> bool:
    """Whether a stored file exists with exactly this size and sha256: the size first (a stat, or a HEAD on S3), the
    bytes only when it matches (a read back; images and exports are small next to a wrong answer)."""
    path = local_path(name)
    try:
        if path is not None:
            if os.path.getsize(path) != size:
                return False
            return sha256_of_file(path) == (sha256, size)
        if default_storage.size(name) != size:
            return False
        digest = hashlib.sha256()
        with default_storage.open(name, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == sha256
    except (FileNotFoundError, OSError):
        return False
    except Exception:  # noqa: BLE001 - remote storages raise their own "not found" (botocore ClientError)
        if default_storage.exists(name):
            raise
        return False


def _write_local(path: str, content, sha256: str, size: int) -> None:
    """Write to a temp name beside the target, check size and sha256 of what is on disk, then rename over it: readers
    see the old file or the whole new one, never a part."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as out:
            content.seek(0)
            for chunk in content.chunks(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if sha256_of_file(temp) != (sha256, size):
            raise StoredFileCorrupt(f"{path}: the written file does not match its sha256 and size")
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _write_remote(name: str, content, sha256: str, size: int) -> None:
    """An object store's put is atomic (the object appears whole or not at all); a wrong object there is removed
    first, since these storages never overwrite. Checked after by size and bytes."""
    if default_storage.exists(name):
        default_storage.delete(name)
    content.seek(0)
    saved = default_storage.save(name, content)
    if saved != name:
        # Someone stored the same name a moment ago; theirs is checked below, the copy under the other name is dropped.
        default_storage.delete(saved)
    if not stored_file_matches(name, sha256, size):
        raise StoredFileCorrupt(f"{name}: the stored object does not match its sha256 and size")


def store_once(name: str, content, *, sha256: str | None = None, size: int | None = None) -> bool:
    """Save under a content-addressed name unless a file with exactly these bytes is already there; a file there
    whose size or sha256 is wrong (a crash or a full disk part way) is replaced, never trusted. True when this call
    wrote. ``sha256`` and ``size`` of ``content`` when the caller knows them already."""
    if sha256 is None or size is None:
        sha256, size = _digest(content)
    if stored_file_matches(name, sha256, size):
        return False
    path = local_path(name)
    if path is not None:
        _write_local(path, content, sha256, size)
    else:
        _write_remote(name, content, sha256, size)
    return True


def sha256_of_file(path) -> tuple[str, int]:
    """The sha256 hex digest and size of a local file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
