"""A bounded queue on disk for what must reach the server: telemetry batches and image uploads.

Items are files named by enqueue time, so replay is oldest first. When the queue is over its bounds the oldest
items are deleted and counted (``dropped``, persisted), so a long outage costs the oldest data, never the disk; a
full disk costs the item being written, counted the same way. Each file is written to a temporary name and renamed,
so a crash never leaves half an item.

Nothing in the queue can stop it: a file that cannot be read back (found at start-up or when sent) is moved to
``set-aside/`` and counted; so is an item the server failed ``MAX_FAILURES`` times while it accepted others.
"""

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.api import BadAnswer, RequestRejected, ServerError, ServerUnavailable

logger = logging.getLogger("agent.spool")

MAX_FAILURES = 5  # answers of 5xx / garbage / 4xx for one item, in passes that delivered others, before it is set aside
FAILURES_IN_A_ROW = 3  # failed items in a row end a pass: the server itself is in trouble, not the items
SET_ASIDE_KEPT = 50  # newest set-aside items kept for a person to look at
UPLOAD_FIELDS = {"dataset", "source", "captured_at", "meta", "filename"}


class CorruptItem(ValueError):
    """A queued file that cannot be read back as the request it was."""


@dataclass
class SpoolItem:
    """One queued request."""

    path: Path
    kind: str  # "telemetry" or "upload"
    count: int  # telemetry records in it (1 for an upload)

    def load(self) -> dict:
        """The request's fields; ``CorruptItem`` when the file is not what ``Spool`` wrote."""
        try:
            body = json.loads(self.path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptItem(f"{self.path.name} is not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("dataset"), str):
            raise CorruptItem(f"{self.path.name} is not a queued request")
        if self.kind == "telemetry" and not isinstance(body.get("records"), list):
            raise CorruptItem(f"{self.path.name} holds no telemetry records")
        if self.kind == "upload" and (not body.keys() <= UPLOAD_FIELDS or not self.blob_path().exists()):
            raise CorruptItem(f"{self.path.name} is not an upload with its image")
        if self.kind not in ("telemetry", "upload"):
            raise CorruptItem(f"{self.path.name} is of unknown kind {self.kind!r}")
        return body

    def blob_path(self) -> Path:
        return self.path.with_suffix(".bin")


class Spool:
    """Disk queue with a bound on items and bytes.

    ``dropped`` counts what the bound and a full disk cost, by kind; ``set_aside`` counts items moved out of the way
    (``corrupt``: unreadable, ``failed``: refused by the server too often). Both persist across restarts.
    """

    def __init__(self, root: Path, *, max_items: int = 2000, max_bytes: int = 200 * 1024 * 1024):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_items, self.max_bytes = max_items, max_bytes
        self._lock = threading.Lock()
        self.aside = self.root / "set-aside"
        self._dropped_path = self.root / "dropped.json"
        self.dropped: dict[str, int] = self._read_counts(self._dropped_path, ("telemetry_records", "uploads"))
        self._set_aside_path = self.root / "set_aside.json"
        self.set_aside: dict[str, int] = self._read_counts(self._set_aside_path, ("corrupt", "failed"))
        self._failures_path = self.root / "failures.json"
        self.failures: dict[str, int] = self._read_counts(self._failures_path, ())  # item name → failures counted
        self._suspects: set[str] = set()  # failed in a pass that proved nothing: tried after the others
        self._last_ns = 0
        self._tidy()

    @staticmethod
    def _read_counts(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
        counts = dict.fromkeys(keys, 0)
        try:
            stored = json.loads(path.read_text())
            counts.update({k: v for k, v in stored.items() if isinstance(k, str) and isinstance(v, int)})
        except (OSError, ValueError, AttributeError, UnicodeDecodeError):
            pass  # missing or unreadable: start from zero rather than not at all
        return counts

    def _save_counts(self, path: Path, counts: dict[str, int]) -> None:
        try:
            self._write(path, json.dumps(counts).encode())
        except OSError as exc:
            logger.warning("could not save %s (%s); the counts stay in memory", path.name, exc)

    def _tidy(self) -> None:
        """At start-up: remove what a crash left (temp files, images without their request), set corrupt items aside."""
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for blob in self.root.glob("*.bin"):
            if not blob.with_suffix(".json").exists():
                blob.unlink(missing_ok=True)
        for item in self.items():
            try:
                item.load()
            except CorruptItem as exc:
                self._put_aside(item, "corrupt", exc)
            except FileNotFoundError:
                pass

    def _name(self, kind: str, count: int) -> str:
        now = max(time.time_ns(), self._last_ns + 1)  # strictly increasing even within one clock tick
        self._last_ns = now
        return f"{now:020d}-{kind}-{count}"

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name("." + path.name + ".tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk must not keep the half it managed to write
            raise

    def put_telemetry(self, body: dict) -> bool:
        """Queue a telemetry batch; False (counted in ``dropped``) when the disk refuses it."""
        count = len(body.get("records", []))
        with self._lock:
            name = self._name("telemetry", count)
            try:
                self._write(self.root / f"{name}.json", json.dumps(body).encode())
            except OSError as exc:
                return self._lost("telemetry_records", count, exc)
            self._enforce_bounds()
        return True

    def put_upload(self, data: bytes, fields: dict) -> bool:
        """Queue an image upload: ``fields`` are ``upload_image``'s keyword arguments (dataset, source, meta, …).

        False (counted in ``dropped``) when the disk refuses it.
        """
        with self._lock:
            name = self._name("upload", 1)
            blob = self.root / f"{name}.bin"
            try:
                self._write(blob, data)  # the blob first: an item never lacks its image
                self._write(self.root / f"{name}.json", json.dumps(fields).encode())
            except OSError as exc:
                blob.unlink(missing_ok=True)
                return self._lost("uploads", 1, exc)
            self._enforce_bounds()
        return True

    def _lost(self, key: str, count: int, exc: OSError) -> bool:
        self.dropped[key] = self.dropped.get(key, 0) + count
        logger.warning("disk queue could not store %d %s (%s); dropped so far %s", count, key, exc, self.dropped)
        self._save_counts(self._dropped_path, self.dropped)
        return False

    def items(self) -> list[SpoolItem]:
        """Queued items, oldest first."""
        items = []
        for path in sorted(self.root.glob("*.json")):
            if path.name == "dropped.json":
                continue
            try:
                _, kind, count = path.stem.split("-")
                items.append(SpoolItem(path, kind, int(count)))
            except ValueError:
                continue
        return items

    def __len__(self) -> int:
        return len(self.items())

    def remove(self, item: SpoolItem) -> None:
        item.path.unlink(missing_ok=True)
        item.blob_path().unlink(missing_ok=True)
        self._suspects.discard(item.path.name)
        if self.failures.pop(item.path.name, None) is not None:
            self._save_counts(self._failures_path, self.failures)

    def _put_aside(self, item: SpoolItem, reason: str, why: Exception) -> None:
        """Move an item out of the queue into ``set-aside/`` (newest kept for a person to look at) and count it."""
        with self._lock:
            self.aside.mkdir(exist_ok=True)
            for path in (item.path, item.blob_path()):
                try:
                    os.replace(path, self.aside / path.name)
                except FileNotFoundError:
                    pass
                except OSError:
                    path.unlink(missing_ok=True)
            self.remove(item)
            self.set_aside[reason] = self.set_aside.get(reason, 0) + 1
            self._save_counts(self._set_aside_path, self.set_aside)
            for old in sorted(self.aside.glob("*.json"))[:-SET_ASIDE_KEPT]:
                old.unlink(missing_ok=True)
                old.with_suffix(".bin").unlink(missing_ok=True)
        logger.error("queued %s %s set aside (%s): %s; set aside so far %s", item.kind, item.path.name, reason, why,
                     self.set_aside)  # fmt: skip

    def _size(self, item: SpoolItem) -> int:
        size = 0
        for path in (item.path, item.blob_path()):
            try:
                size += path.stat().st_size
            except FileNotFoundError:
                pass
        return size

    def _enforce_bounds(self) -> None:
        items = self.items()
        total = sum(self._size(item) for item in items)
        dropped_now = 0
        while items and (len(items) > self.max_items or total > self.max_bytes):
            oldest = items.pop(0)
            total -= self._size(oldest)
            self.remove(oldest)
            key = "telemetry_records" if oldest.kind == "telemetry" else "uploads"
            self.dropped[key] = self.dropped.get(key, 0) + oldest.count
            dropped_now += 1
        if dropped_now:
            self._save_counts(self._dropped_path, self.dropped)
            logger.warning("disk queue full: dropped %d oldest item(s); dropped so far %s", dropped_now, self.dropped)

    def drain(self, send: Callable[[SpoolItem], None]) -> int:
        """Send queued items until the queue is empty or the server is unreachable. Returns how many were sent.

        Oldest first, except that items the server failed before go after the others, so one poison item never
        holds up the rest. ``send`` raises ``ServerUnavailable`` without an answer (network, 429) to end the pass
        (the item stays); ``ServerError``, ``BadAnswer`` or ``RequestRejected`` when the server failed this item:
        such a failure counts only in a pass that delivered other items (then the item is the problem, not the
        server), and after ``MAX_FAILURES`` the item is set aside. ``FAILURES_IN_A_ROW`` ends a pass. An unreadable
        item (``CorruptItem``) is set aside at once; ``TokenRevoked`` propagates.
        """
        items = self.items()
        items.sort(key=lambda item: item.path.name in self._suspects or item.path.name in self.failures)
        sent, failed, in_a_row = 0, [], 0
        for item in items:
            try:
                send(item)
            except CorruptItem as exc:
                self._put_aside(item, "corrupt", exc)
                continue
            except (ServerError, BadAnswer, RequestRejected) as exc:
                logger.warning("server failed queued %s %s: %s", item.kind, item.path.name, exc)
                failed.append((item, exc))
                in_a_row += 1
                if in_a_row >= FAILURES_IN_A_ROW:
                    break
                continue
            except ServerUnavailable:
                break
            except FileNotFoundError:
                pass  # dropped by the bound while we were sending
            else:
                sent += 1
            in_a_row = 0
            with self._lock:
                self.remove(item)
        for item, exc in failed:
            self._suspects.add(item.path.name)
            if not sent:
                continue  # nothing got through: the server's trouble, not the item's
            failures = self.failures[item.path.name] = self.failures.get(item.path.name, 0) + 1
            if failures >= MAX_FAILURES:
                self._put_aside(item, "failed", exc)
        if failed and sent:
            self._save_counts(self._failures_path, self.failures)
        return sent
