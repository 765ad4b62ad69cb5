"""Telemetry and uploads: what the robot tells the server, buffered in memory, queued on disk, sent when it can.

The main thread adds telemetry records and uncertain frames (within an hourly upload budget); the sync thread moves
the records into the disk queue in batches of at most 500 and sends the queue, oldest first.
"""

import datetime
import threading
import time
from collections import deque

from agent.api import MAX_TELEMETRY_RECORDS, ApiClient
from agent.spool import Spool, SpoolItem

MAX_SEND_WAIT_S = 300.0


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


def send_item(client: ApiClient, item: SpoolItem, *, spool: Spool | None = None) -> None:
    """Send one queued request; a telemetry batch carries the running totals of what the disk queue lost."""
    payload = item.load()
    if item.kind == "telemetry":
        if spool is not None:
            for name, counts in (("dropped", spool.dropped), ("set_aside", spool.set_aside)):
                if any(counts.values()):
                    payload[name] = dict(counts)
        client.post_telemetry(**payload)
    else:
        client.upload_image(item.blob_path().read_bytes(), **payload)


class UploadBudget:
    """At most ``per_hour`` uploads in any sliding hour."""

    def __init__(self, per_hour: int):
        self.per_hour = per_hour
        self._times: deque[float] = deque()

    def take(self, now: float) -> bool:
        while self._times and self._times[0] < now - 3600:
            self._times.popleft()
        if len(self._times) >= self.per_hour:
            return False
        self._times.append(now)
        return True


class Reporter:
    """Telemetry records and agent events in memory, uncertain frames and batches in the disk queue."""

    def __init__(
        self,
        client: ApiClient,
        spool: Spool,
        dataset: str,
        *,
        telemetry_interval_s: float = 10.0,
        max_uploads_per_hour: int = 20,
    ):
        self.client = client
        self.spool = spool
        self.dataset = dataset
        self.telemetry_interval_s = telemetry_interval_s
        self.uploads = UploadBudget(max_uploads_per_hour)
        self.next_flush = time.monotonic() + telemetry_interval_s
        self.next_send = 0.0  # scheduled passes wait until then after passes that delivered nothing
        self.send_failures = 0
        self.events: list[dict] = []  # reported with the next telemetry batch (e.g. a model that failed to load)
        self._records: list[tuple[int, dict]] = []
        self._records_lock = threading.Lock()

    def event(self, event: str, **details) -> None:
        self.events.append({"event": event, "at": iso(time.time()), **details})

    def record(self, model_id: int, record: dict) -> None:
        with self._records_lock:
            self._records.append((model_id, record))

    def pending_records(self) -> int:
        with self._records_lock:
            return len(self._records)

    def upload_if_allowed(self, jpeg: bytes, fields: dict) -> bool:
        """Queue an uncertain frame unless the hourly upload budget is spent."""
        return self.uploads.take(time.time()) and self.spool.put_upload(jpeg, fields)

    def flush_if_due(self, now: float, *, force: bool = False) -> None:
        """Queue telemetry every interval; send the queue too, unless passes that got nothing through wait longer."""
        if force or now >= self.next_flush or self.pending_records() >= MAX_TELEMETRY_RECORDS:
            self.next_flush = now + self.telemetry_interval_s
            self.flush(send=force or now >= self.next_send, now=now)

    def flush(self, *, send: bool = True, now: float | None = None) -> int:
        """Move pending telemetry into the disk queue (≤ 500 records per batch), then send the queue.

        A pass that delivers nothing while items wait (server down, a captive portal) doubles the wait before the
        next scheduled pass, up to 5 minutes; a pass that delivers resets it.
        """
        with self._records_lock:
            pending, self._records = self._records, []
        by_model: dict[int, list[dict]] = {}
        for model_id, record in pending:
            by_model.setdefault(model_id, []).append(record)
        events, self.events = self.events, []
        for model_id, records in by_model.items():
            for start in range(0, len(records), MAX_TELEMETRY_RECORDS):
                body = {
                    "dataset": self.dataset,
                    "model_id": model_id,
                    "records": records[start : start + MAX_TELEMETRY_RECORDS],
                }
                if events:
                    body["agent_events"], events = events, []
                self.spool.put_telemetry(body)
        self.events.extend(events)  # none sent (no records yet): keep them for the next batch
        if not send:
            return 0
        sent = self.spool.drain(lambda item: send_item(self.client, item, spool=self.spool))
        if sent == 0 and len(self.spool):
            self.send_failures += 1
            wait = min(MAX_SEND_WAIT_S, self.telemetry_interval_s * 2**self.send_failures)
            self.next_send = (time.monotonic() if now is None else now) + wait
        else:
            self.send_failures, self.next_send = 0, 0.0
        return sent
