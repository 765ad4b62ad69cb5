"""What the agent does: the production loop (``run``), frame collection (``collect``) and ``feedback``.

``run`` has two threads. The main thread owns the robot: capture → detect → screen/voice → queue telemetry and
uncertain frames. The sync thread owns the server: poll the model (ETag, ``poll_after_s`` with jitter), download
and swap it in, and send queued telemetry and uploads through the disk queue. So inference never waits for the
network, and an outage only grows the queue.
"""

import datetime
import json
import logging
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .api import (
    MAX_TELEMETRY_RECORDS,
    ApiClient,
    CorruptDownload,
    NoDeployment,
    RequestRejected,
    ServerUnavailable,
    TokenRevoked,
)
from .detector import Detection, Detector, ModelLoadFailed
from .imaging import image_stats, render_face, to_jpeg, to_screen_data
from .modelstore import ModelInfo, ModelStore
from .spool import Spool, SpoolItem
from .vector import Frame, RobotLost, VectorLink

logger = logging.getLogger("agent")

EXIT_REVOKED = 3
REVOKED_MESSAGE = (
    "The server refused this robot's token (401): it was revoked or is wrong. The agent stops instead of retrying. "
    "Ask an admin to re-register the robot, then run `python -m agent enroll` again."
)


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class RunOptions:
    """Knobs of the production loop."""

    dataset: str
    frame_interval_s: float = 0.5
    band: tuple[float, float] = (0.25, 0.6)  # best confidence in [low, high) → upload as low_confidence
    max_uploads_per_hour: int = 20
    telemetry_interval_s: float = 10.0
    say_interval_s: float = 30.0
    say_text: str = "I see a {label}"
    head_angle_deg: float | None = 0.0
    screen: bool = True
    poll_jitter: float = 0.2
    max_frames: int | None = None  # stop after this many frames (tests, demos)


class Agent:
    """The production loop of one robot. Tests drive ``sync_once`` and ``process_frame`` directly."""

    def __init__(
        self,
        client: ApiClient,
        data_dir: Path,
        options: RunOptions,
        *,
        link: VectorLink | None = None,
        spool_max_items: int = 2000,
        spool_max_bytes: int = 200 * 1024 * 1024,
    ):
        self.client = client
        self.options = options
        self.data_dir = Path(data_dir)
        self.store = ModelStore(self.data_dir / "models")
        self.spool = Spool(self.data_dir / "spool", max_items=spool_max_items, max_bytes=spool_max_bytes)
        self.link = link
        self.stop = threading.Event()
        self.fatal: str | None = None
        self.etag: str | None = None
        self.poll_after_s = 60.0
        self.next_poll = 0.0
        self.next_flush = time.monotonic() + options.telemetry_interval_s
        self.unavailable_streak = 0
        self.frames = 0
        self.events: list[dict] = []  # reported with the next telemetry batch (e.g. a model that failed to load)
        self._records: list[tuple[int, dict]] = []
        self._records_lock = threading.Lock()
        self._uploads: deque[float] = deque()
        self._last_said = -1e9
        self._saw_before = False
        self._active: tuple[Detector | None, ModelInfo | None] = (None, None)
        self._load_installed()

    # --- models -------------------------------------------------------------------------------------------------
    @staticmethod
    def _loader(path: Path, info: ModelInfo) -> Detector:
        return Detector(path, info.classes, imgsz=info.imgsz)

    def _load_installed(self) -> None:
        """At start, run what was running before (or the model before it, if that one no longer loads)."""
        for info in (self.store.current, self.store.previous):
            if info is None:
                continue
            try:
                self._activate(self.store.install(info, self._loader), info)
                return
            except ModelLoadFailed as exc:
                logger.error("installed model %s does not load: %s", info.model_id, exc)

    def _activate(self, detector: Detector, info: ModelInfo) -> None:
        self._active = (detector, info)
        self.client.running_model = (info.model_id, info.sha256)

    @property
    def model(self) -> ModelInfo | None:
        return self._active[1]

    def _report(self, event: str, **details) -> None:
        self.events.append({"event": event, "at": iso(time.time()), **details})

    def sync_model(self) -> bool:
        """Poll once; download, verify and swap in a new model. True when the running model changed.

        Raises ServerUnavailable, NoDeployment, CorruptDownload and TokenRevoked to the caller.
        """
        answer = self.client.get_model(self.options.dataset, self.etag)
        if answer is None:
            return False
        self.poll_after_s = answer.poll_after_s
        current = self.model
        if current is not None and answer.sha256 == current.sha256:
            if answer.conf_threshold != current.conf_threshold or answer.classes != current.classes:
                current.conf_threshold, current.classes = answer.conf_threshold, answer.classes
            self.etag = answer.etag
            return False
        if answer.sha256 in self.store.rejected:
            self.etag = answer.etag  # already reported; wait for the server to change its answer
            return False
        info = ModelInfo(
            model_id=answer.model_id,
            sha256=answer.sha256,
            size=answer.size,
            dataset=answer.dataset or self.options.dataset,
            version=answer.version,
            classes=answer.classes,
            imgsz=answer.imgsz,
            conf_threshold=answer.conf_threshold,
        )
        downloaded = None
        if not self.store.has_verified(info.sha256):  # e.g. a rollback to the previous model needs no download
            logger.info("downloading model %s (%d bytes)", info.model_id, info.size)
            try:
                downloaded = self.client.download(
                    answer.url, self.store.part_path(info.sha256), size=info.size, sha256=info.sha256
                )
            except CorruptDownload as exc:
                logger.error("model %s download is corrupt (%s); not installed", info.model_id, exc)
                self._report("model_download_corrupt", model_id=info.model_id, sha256=info.sha256, error=str(exc))
                raise
        try:
            detector = self.store.install(info, self._loader, downloaded)
        except ModelLoadFailed as exc:
            logger.error("model %s failed to load (%s); keeping the current model", info.model_id, exc)
            self._report("model_load_failed", model_id=info.model_id, sha256=info.sha256, error=str(exc)[:300])
            self.etag = answer.etag
            return False
        self._activate(detector, info)
        self.etag = answer.etag
        return True

    # --- the server side (sync thread) ------------------------------------------------------------------------
    def sync_once(self, *, force: bool = False) -> None:
        """Poll when due, then flush telemetry to the disk queue and send what is queued."""
        now = time.monotonic()
        if force or now >= self.next_poll:
            jitter = random.uniform(1 - self.options.poll_jitter, 1 + self.options.poll_jitter)
            try:
                self.sync_model()
                self.unavailable_streak = 0
                self.next_poll = now + self.poll_after_s * jitter
            except ServerUnavailable as exc:
                self.unavailable_streak += 1
                delay = min(self.poll_after_s, 2.0**self.unavailable_streak) * jitter
                logger.warning("server unavailable (%s); keeping the current model, next try in %.0fs", exc, delay)
                self.next_poll = now + delay
            except (NoDeployment, CorruptDownload, RequestRejected) as exc:
                if isinstance(exc, NoDeployment):
                    logger.info("no model deployed for %s yet", self.options.dataset)
                self.next_poll = now + self.poll_after_s * jitter
        if force or now >= self.next_flush or self.pending_records() >= MAX_TELEMETRY_RECORDS:
            self.next_flush = now + self.options.telemetry_interval_s
            self.flush()

    def pending_records(self) -> int:
        with self._records_lock:
            return len(self._records)

    def flush(self) -> int:
        """Move pending telemetry into the disk queue (≤ 500 records per batch), then send the queue."""
        with self._records_lock:
            pending, self._records = self._records, []
        by_model: dict[int, list[dict]] = {}
        for model_id, record in pending:
            by_model.setdefault(model_id, []).append(record)
        events, self.events = self.events, []
        for model_id, records in by_model.items():
            for start in range(0, len(records), MAX_TELEMETRY_RECORDS):
                body = {
                    "dataset": self.options.dataset,
                    "model_id": model_id,
                    "records": records[start : start + MAX_TELEMETRY_RECORDS],
                }
                if events:
                    body["agent_events"], events = events, []
                self.spool.put_telemetry(body)
        self.events.extend(events)  # none sent (no records yet): keep them for the next batch
        return self.spool.drain(self._send)

    def _send(self, item: SpoolItem) -> None:
        payload = item.load()
        if item.kind == "telemetry":
            if any(self.spool.dropped.values()):
                payload["dropped"] = dict(self.spool.dropped)  # running totals of what the disk bound cost
            self.client.post_telemetry(**payload)
        else:
            self.client.upload_image(item.blob_path().read_bytes(), **payload)

    # --- the robot side (main thread) --------------------------------------------------------------------------
    def _may_upload(self, now: float) -> bool:
        while self._uploads and self._uploads[0] < now - 3600:
            self._uploads.popleft()
        if len(self._uploads) >= self.options.max_uploads_per_hour:
            return False
        self._uploads.append(now)
        return True

    def process_frame(self, frame: Frame) -> list[Detection] | None:
        """Detect, record telemetry, queue an uncertain frame, remember the frame for feedback.

        Returns the detections shown (above the model's threshold), or None when no model runs yet.
        """
        detector, info = self._active
        if detector is None:
            return None
        low, high = self.options.band
        started = time.perf_counter()
        raw = detector.detect(frame.image, conf=min(low, info.conf_threshold))
        latency_ms = (time.perf_counter() - started) * 1000
        shown = [d for d in raw if d.confidence >= info.conf_threshold]
        record = {
            "captured_at": iso(frame.captured_at),
            "latency_ms": round(latency_ms, 2),
            "detections": [d.as_json() for d in shown],
            "image_stats": image_stats(frame.image),
        }
        with self._records_lock:
            self._records.append((info.model_id, record))
        best = max((d.confidence for d in raw), default=0.0)
        jpeg = None
        meta = {
            **frame.meta(),
            "model_id": info.model_id,
            "model_sha256": info.sha256,
            "predictions": [d.as_json() for d in raw],
        }
        if low <= best < high and self._may_upload(time.time()):
            jpeg = to_jpeg(frame.image)
            fields = {
                "dataset": self.options.dataset,
                "source": "low_confidence",
                "captured_at": iso(frame.captured_at),
                "meta": {**meta, "best_confidence": round(best, 4)},
            }
            self.spool.put_upload(jpeg, fields)
        self._remember_frame(jpeg or to_jpeg(frame.image), frame, meta)
        self.frames += 1
        return shown

    def _remember_frame(self, jpeg: bytes, frame: Frame, meta: dict) -> None:
        """The last frame and what the model said about it, for ``feedback``."""
        for name, data in (("last_frame.jpg", jpeg), ("last_frame.json", None)):
            if data is None:
                data = json.dumps({"dataset": self.options.dataset, "captured_at": iso(frame.captured_at), **meta})
                data = data.encode()
            tmp = self.data_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.data_dir / name)

    def react(self, frame: Frame, shown: list[Detection]) -> None:
        """Show the boxes on the face screen; say something on a new sighting (rate-limited)."""
        if self.link is None:
            return
        if self.options.screen:
            face = render_face(frame.image, shown)
            self.link.show(to_screen_data(face), max(1.0, self.options.frame_interval_s * 2))
        now = time.monotonic()
        if shown and not self._saw_before and now - self._last_said >= self.options.say_interval_s:
            self._last_said = now
            self.link.say(self.options.say_text.format(label=shown[0].label.capitalize()))
        self._saw_before = bool(shown)

    # --- the loop -----------------------------------------------------------------------------------------------
    def _sync_forever(self) -> None:
        try:
            while not self.stop.is_set():
                self.sync_once()
                self.stop.wait(0.25)
        except TokenRevoked:
            self.fatal = REVOKED_MESSAGE
            self.stop.set()
        except Exception:  # a bug here must not leave a zombie agent that no longer syncs
            logger.exception("sync thread crashed")
            self.fatal = "internal error in the sync thread (see the log)"
            self.stop.set()

    def run(self) -> int:
        """Run until stopped (signal, ``max_frames``, or a revoked token). Returns the process exit code."""
        sync = threading.Thread(target=self._sync_forever, name="agent-sync", daemon=True)
        sync.start()
        link = self.link
        link.stop = self.stop
        if self.options.head_angle_deg is not None:
            link.head_angle_deg = self.options.head_angle_deg
        try:
            while not self.stop.is_set():
                if not link.ensure_connected():
                    break
                if self._active[0] is None:
                    self.stop.wait(0.5)
                    continue
                try:
                    frame = link.capture()
                    shown = self.process_frame(frame)
                    if shown is not None:
                        self.react(frame, shown)
                except RobotLost:
                    continue  # ensure_connected reconnects with backoff
                if self.options.max_frames and self.frames >= self.options.max_frames:
                    break
                self.stop.wait(self.options.frame_interval_s)
        finally:
            self.stop.set()
            sync.join(timeout=60)
            link.disconnect()
        if self.fatal:
            logger.error(self.fatal)
            return EXIT_REVOKED if self.fatal == REVOKED_MESSAGE else 1
        try:
            self.flush()  # last chance; what is not sent stays queued on disk for the next start
        except TokenRevoked:
            logger.error(REVOKED_MESSAGE)
            return EXIT_REVOKED
        logger.info("stopped after %d frame(s); %d item(s) left in the disk queue", self.frames, len(self.spool))
        return 0


# --- collect and feedback ----------------------------------------------------------------------------------------
def send_or_queue(client: ApiClient, spool: Spool, data: bytes, fields: dict) -> dict | None:
    """Upload now, or queue on disk when the server is unavailable (None). TokenRevoked propagates."""
    try:
        return client.upload_image(data, **fields)
    except ServerUnavailable as exc:
        logger.warning("server unavailable (%s); queued on disk", exc)
        spool.put_upload(data, fields)
        return None


def drain_uploads(client: ApiClient, spool: Spool) -> int:
    def send(item: SpoolItem) -> None:
        payload = item.load()
        if item.kind == "telemetry":
            client.post_telemetry(**payload)
        else:
            client.upload_image(item.blob_path().read_bytes(), **payload)

    return spool.drain(send)


def collect(
    client: ApiClient,
    link: VectorLink,
    spool: Spool,
    *,
    dataset: str,
    every_s: float = 5.0,
    count: int | None = None,
    head_angle_deg: float | None = 0.0,
    stop: threading.Event | None = None,
) -> int:
    """Capture frames every ``every_s`` seconds and upload them as ``source=camera``; returns frames captured."""
    stop = stop or link.stop
    link.stop = stop
    if head_angle_deg is not None:
        link.head_angle_deg = head_angle_deg
    captured = 0
    try:
        drain_uploads(client, spool)
        while not stop.is_set() and (count is None or captured < count):
            if not link.ensure_connected():
                break
            try:
                frame = link.capture()
            except RobotLost:
                continue
            fields = {
                "dataset": dataset,
                "source": "camera",
                "captured_at": iso(frame.captured_at),
                "meta": frame.meta(),
            }
            result = send_or_queue(client, spool, to_jpeg(frame.image), fields)
            captured += 1
            logger.info("frame %d (image id %s): %s", captured, frame.image_id, result or "queued")
            if count is None or captured < count:
                stop.wait(every_s)
        drain_uploads(client, spool)
    finally:
        link.disconnect()
    return captured


def feedback(
    client: ApiClient,
    spool: Spool,
    data_dir: Path,
    *,
    reason: str,
    image: Path | None = None,
    dataset: str | None = None,
) -> dict | None:
    """Upload the last frame (or ``image``) as ``source=feedback`` with the reason and what the model said."""
    last_meta_path = Path(data_dir) / "last_frame.json"
    meta: dict = {}
    if image is None:
        image = Path(data_dir) / "last_frame.jpg"
        if not image.exists():
            raise FileNotFoundError(f"no last frame in {data_dir}: run the agent first or pass --image")
        if last_meta_path.exists():
            meta = json.loads(last_meta_path.read_text())
    dataset = dataset or meta.pop("dataset", None)
    if not dataset:
        raise ValueError("which dataset? pass --dataset")
    captured_at = meta.pop("captured_at", None) or iso(image.stat().st_mtime)
    fields = {
        "dataset": dataset,
        "source": "feedback",
        "captured_at": captured_at,
        "meta": {**meta, "reason": reason},
        "filename": image.name,
    }
    return send_or_queue(client, spool, image.read_bytes(), fields)
