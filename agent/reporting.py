"""Telemetry and uploads: what the robot tells the server, buffered in memory, queued on disk, sent when it can.

The main thread adds telemetry records, uncertain and shadow-disagreement frames (within one hourly upload budget)
and counts the frames the shadow model skipped; the sync thread moves the records into the disk queue in batches of
at most 500 (the first batch of a flush carries the agent events and ``shadow_skipped``) and sends the queue, oldest
first.
"""

import datetime
import threading
import time
from collections import Counter, deque

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

    def take(self, now: float, *, leave: int = 0) -> bool:
        """Count one upload now unless the hour's budget, less ``leave`` uploads kept for others, is spent."""
        while self._times and self._times[0] < now - 3600:
            self._times.popleft()
        if len(self._times) >= self.per_hour - leave:
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
        self._shadow_skipped: Counter[int] = (
            Counter()
        )  # shadow model id → frames skipped (over budget) since last flush
        self._records_lock = threading.Lock()

    def event(self, event: str, **details) -> None:
        """Report an event with the next batch (from either thread: a shadow model fails on the main one)."""
        with self._records_lock:
            self.events.append({"event": event, "at": iso(time.time()), **details})

    def record(self, model_id: int, record: dict) -> None:
        with self._records_lock:
            self._records.append((model_id, record))

    def shadow_skipped(self, shadow_model_id: int) -> None:
        """Count one frame the shadow model did not run on (over its latency budget)."""
        with self._records_lock:
            self._shadow_skipped[shadow_model_id] += 1

    def pending_records(self) -> int:
        with self._records_lock:
            return len(self._records)

    def upload_if_allowed(self, jpeg: bytes, fields: dict, *, leave: int = 0) -> bool:
        """Queue a frame (uncertain, or one the shadow model disagrees on) unless the hourly upload budget is spent;
        ``leave``: uploads of the budget this frame must leave to other kinds of frames."""
        return self.uploads.take(time.time(), leave=leave) and self.spool.put_upload(jpeg, fields)

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
            skipped, self._shadow_skipped = self._shadow_skipped, Counter()
            events, self.events = self.events, []
        by_model: dict[int, list[dict]] = {}
        for model_id, record in pending:
            by_model.setdefault(model_id, []).append(record)
        extra: dict = {}
        if events:
            extra["agent_events"] = events
        if skipped:
            extra["shadow_skipped"] = [{"model_id": m, "frames": n} for m, n in skipped.items()]
        for model_id, records in by_model.items():
            for start in range(0, len(records), MAX_TELEMETRY_RECORDS):
                body = {
                    "dataset": self.dataset,
                    "model_id": model_id,
                    "records": records[start : start + MAX_TELEMETRY_RECORDS],
                }
                body.update(extra)
                extra = {}
                self.spool.put_telemetry(body)
        if extra:  # no records carried them (none yet): keep them for the next batch
            with self._records_lock:
                self.events[:0] = extra.get("agent_events", [])
                self._shadow_skipped.update(skipped)
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
