"""Stored files (local disk or S3-like storage) and the local disk: where a stored file is, putting one on disk,
storing content-addressed files once, hashing files in chunks."""

import hashlib
import os
import shutil
from pathlib import Path

from django.core.files.storage import default_storage

CHUNK = 1024 * 1024


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


def store_once(name: str, content) -> bool:
    """Save under a content-addressed name unless it is already there; True when this call wrote it."""
    if default_storage.exists(name):
        return False
    saved = default_storage.save(name, content)
    if saved != name:
        # Someone stored the same bytes a moment ago; the copy under the other name is redundant.
        default_storage.delete(saved)
        return False
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
