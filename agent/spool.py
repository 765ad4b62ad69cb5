"""A bounded queue on disk for what must reach the server: telemetry batches and image uploads.

Items are files named by enqueue time, so replay is oldest first. When the queue is over its bounds the oldest
items are deleted and counted (``dropped``, persisted), so a long outage costs the oldest data, never the disk.
Each file is written to a temporary name and renamed, so a crash never leaves half an item.
"""

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .api import RequestRejected, ServerUnavailable

logger = logging.getLogger("agent.spool")


@dataclass
class SpoolItem:
    """One queued request."""

    path: Path
    kind: str  # "telemetry" or "upload"
    count: int  # telemetry records in it (1 for an upload)

    def load(self) -> dict:
        return json.loads(self.path.read_text())

    def blob_path(self) -> Path:
        return self.path.with_suffix(".bin")


class Spool:
    """Disk queue with a bound on items and bytes; ``dropped`` counts what the bound cost, by kind."""

    def __init__(self, root: Path, *, max_items: int = 2000, max_bytes: int = 200 * 1024 * 1024):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_items, self.max_bytes = max_items, max_bytes
        self._lock = threading.Lock()
        self._dropped_path = self.root / "dropped.json"
        try:
            self.dropped: dict[str, int] = json.loads(self._dropped_path.read_text())
        except (FileNotFoundError, ValueError):
            self.dropped = {"telemetry_records": 0, "uploads": 0}
        self._last_ns = 0

    def _name(self, kind: str, count: int) -> str:
        now = max(time.time_ns(), self._last_ns + 1)  # strictly increasing even within one clock tick
        self._last_ns = now
        return f"{now:020d}-{kind}-{count}"

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name("." + path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def put_telemetry(self, body: dict) -> None:
        with self._lock:
            name = self._name("telemetry", len(body.get("records", [])))
            self._write(self.root / f"{name}.json", json.dumps(body).encode())
            self._enforce_bounds()

    def put_upload(self, data: bytes, fields: dict) -> None:
        """Queue an image upload: ``fields`` are ``upload_image``'s keyword arguments (dataset, source, meta, …)."""
        with self._lock:
            name = self._name("upload", 1)
            self._write(self.root / f"{name}.bin", data)  # the blob first: an item never lacks its image
            self._write(self.root / f"{name}.json", json.dumps(fields).encode())
            self._enforce_bounds()

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
            self._write(self._dropped_path, json.dumps(self.dropped).encode())
            logger.warning("disk queue full: dropped %d oldest item(s); dropped so far %s", dropped_now, self.dropped)

    def drain(self, send: Callable[[SpoolItem], None]) -> int:
        """Send queued items oldest first until the queue is empty or the server is unavailable.

        ``send`` raises ``ServerUnavailable`` to stop (the item stays), ``RequestRejected`` to discard the item
        (it would never be accepted); ``TokenRevoked`` propagates. Returns how many items were sent.
        """
        sent = 0
        for item in self.items():
            try:
                send(item)
            except ServerUnavailable:
                break
            except RequestRejected as exc:
                logger.error("server rejected queued %s %s for good: %s", item.kind, item.path.name, exc)
            except FileNotFoundError:
                pass  # dropped by the bound while we were sending
            else:
                sent += 1
            with self._lock:
                self.remove(item)
        return sent
