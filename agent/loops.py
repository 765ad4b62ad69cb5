"""What the agent does: the production loop (``run``), frame collection (``collect``) and ``feedback``.

``run`` has two threads. The main thread owns the robot: capture → detect → screen/voice → queue telemetry and
uncertain frames; a shadow model, when the server announces one, runs on the same frames (``shadow``) and is never
acted on. The sync thread owns the server: model sync (``modelsync``: poll, download, verify, swap) and
reporting (``reporting``: telemetry batches and uploads through the disk queue). So inference never waits for the
network, and an outage only grows the queue.
"""

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.api import ApiClient, ServerUnavailable, TokenRevoked
from agent.detector import Detection
from agent.imaging import image_stats, render_face, to_jpeg, to_screen_data
from agent.modelstore import ModelInfo, ModelStore
from agent.modelsync import ModelSync
from agent.reporting import Reporter, iso, send_item
from agent.shadow import ShadowRunner
from agent.spool import Spool
from agent.vector import Frame, RobotLost, VectorLink

logger = logging.getLogger("agent")

EXIT_REVOKED = 3
REVOKED_MESSAGE = (
    "The server refused this robot's token (401): it was revoked or is wrong. The agent stops instead of retrying. "
    "Ask an admin to re-register the robot, then run `python -m agent enroll` again."
)


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
    shadow_budget_ms: float | None = None  # the shadow model's latency budget (None: 1.5x the live median)
    disagreement_window_s: float | None = None  # one shadow_disagreement upload per window (None: hour / budget)
    min_disagreement: float = 0.25  # frames scoring less are never uploaded as disagreements


class Agent:
    """The production loop of one robot: frames on the main thread, ``models`` and ``reporter`` on the sync thread.

    Tests drive ``sync_once`` and ``process_frame`` directly.
    """

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
        self.spool = Spool(self.data_dir / "spool", max_items=spool_max_items, max_bytes=spool_max_bytes)
        self.reporter = Reporter(
            client,
            self.spool,
            options.dataset,
            telemetry_interval_s=options.telemetry_interval_s,
            max_uploads_per_hour=options.max_uploads_per_hour,
        )
        self.models = ModelSync(
            client,
            self.data_dir / "models",
            options.dataset,
            report=self.reporter.event,
            poll_jitter=options.poll_jitter,
        )
        window = options.disagreement_window_s
        if window is None:
            window = 3600 / max(1, options.max_uploads_per_hour)
        self.shadow = ShadowRunner(
            self.models,
            self.reporter,
            options.dataset,
            budget_ms=options.shadow_budget_ms,
            upload_window_s=window,
            min_disagreement=options.min_disagreement,
            clock=lambda: self.clock(),
        )
        self.clock = time.perf_counter  # times both models (tests slow a model down by moving a fake clock)
        self.link = link
        self.stop = threading.Event()
        self.fatal: str | None = None
        self.frames = 0
        self._last_said = -1e9
        self._saw_before = False
        self._disk_full = False

    # --- shortcuts into the two parts --------------------------------------------------------------------------
    @property
    def model(self) -> ModelInfo | None:
        return self.models.live.info

    @property
    def store(self) -> ModelStore:
        return self.models.live.store

    @property
    def etag(self) -> str | None:
        return self.models.etag

    @etag.setter
    def etag(self, value: str | None) -> None:
        self.models.etag = value

    @property
    def unavailable_streak(self) -> int:
        return self.models.unavailable_streak

    @property
    def events(self) -> list[dict]:
        return self.reporter.events

    def sync_model(self) -> bool:
        return self.models.sync()

    def flush(self) -> int:
        return self.reporter.flush()

    # --- the server side (sync thread) ------------------------------------------------------------------------
    def sync_once(self, *, force: bool = False) -> None:
        """Poll when due, then flush telemetry to the disk queue and send what is queued."""
        now = time.monotonic()
        self.models.poll_if_due(now, force=force)
        self.reporter.flush_if_due(now, force=force)

    # --- the robot side (main thread) --------------------------------------------------------------------------
    def process_frame(self, frame: Frame) -> list[Detection] | None:
        """Detect, record telemetry, queue an uncertain frame, remember the frame for feedback.

        Returns the detections shown (above the model's threshold), or None when no model runs yet: the live
        model's alone, whatever the shadow model saw (its detections go only into telemetry and uploads).
        """
        detector, info = self.models.live.active
        if detector is None:
            return None
        low, high = self.options.band
        started = self.clock()
        raw = detector.detect(frame.image, conf=min(low, info.conf_threshold))
        latency_ms = (self.clock() - started) * 1000
        shown = [d for d in raw if d.confidence >= info.conf_threshold]
        record = {
            "captured_at": iso(frame.captured_at),
            "latency_ms": round(latency_ms, 2),
            "detections": [d.as_json() for d in shown],
            "image_stats": image_stats(frame.image),
        }
        shadow = self.shadow.run(frame.image, latency_ms)
        if shadow is not None:
            record["shadow"] = shadow.as_record()
            self.shadow.consider_upload(frame, info, shown, shadow, time.monotonic())
        self.reporter.record(info.model_id, record)
        best = max((d.confidence for d in raw), default=0.0)
        jpeg = None
        meta = {
            **frame.meta(),
            "model_id": info.model_id,
            "model_sha256": info.sha256,
            "predictions": [d.as_json() for d in raw],
        }
        if low <= best < high:
            fields = {
                "dataset": self.options.dataset,
                "source": "low_confidence",
                "captured_at": iso(frame.captured_at),
                "meta": {**meta, "best_confidence": round(best, 4)},
            }
            jpeg = to_jpeg(frame.image)
            # While a shadow model runs, uncertain frames (frequent) may take only half of the hourly budget: the
            # other half stays for the shadow's disagreement frames (one per window), which they would crowd out.
            leave = self.options.max_uploads_per_hour // 2 if self.models.shadow is not None else 0
            self.reporter.upload_if_allowed(jpeg, fields, leave=leave)
        self._remember_frame(jpeg or to_jpeg(frame.image), frame, meta)
        self.frames += 1
        return shown

    def _remember_frame(self, jpeg: bytes, frame: Frame, meta: dict) -> None:
        """The last frame and what the model said about it, for ``feedback`` (skipped while the disk is full)."""
        for name, data in (("last_frame.jpg", jpeg), ("last_frame.json", None)):
            if data is None:
                data = json.dumps({"dataset": self.options.dataset, "captured_at": iso(frame.captured_at), **meta})
                data = data.encode()
            tmp = self.data_dir / f".{name}.tmp"
            try:
                tmp.write_bytes(data)
                os.replace(tmp, self.data_dir / name)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if not self._disk_full:
                    logger.warning("cannot keep the last frame (%s); detection goes on", exc)
                self._disk_full = True
                return
        self._disk_full = False

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
        failures = 0
        while not self.stop.is_set():
            try:
                self.sync_once()
                failures = 0
                self.stop.wait(0.25)
            except TokenRevoked:
                self.fatal = REVOKED_MESSAGE
                self.stop.set()
            except Exception:  # a bug or an unforeseen fault: keep the model running, log, retry later
                failures += 1
                delay = min(300.0, 2.0**failures)
                logger.exception("sync failed unexpectedly; the current model keeps running, next try in %.0fs", delay)
                self.stop.wait(delay)

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
                if self.models.live.active[0] is None:
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
    return spool.drain(lambda item: send_item(client, item))


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
