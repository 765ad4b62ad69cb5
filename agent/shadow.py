"""The shadow model on the main thread: run beside the live model on the same frames, never acted on.

Its detections only go into telemetry (the record's ``shadow`` part) and into ``shadow_disagreement`` uploads; what
the robot shows, says and does comes from the live model alone (``Agent.process_frame`` returns only the live
detections). It stays within a latency budget: ``--shadow-budget-ms``, else 1.5× the live model's rolling median.
A frame is skipped (and counted) when the shadow's own rolling median is over the budget, so which frames are
skipped is predictable; one frame in ``PROBE_EVERY`` runs anyway so the estimate can recover. A shadow model that
raises while running is reported, dropped and never loaded again on this robot.
"""

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from agent.detector import Detection
from agent.imaging import to_jpeg
from agent.modelstore import ModelInfo
from agent.modelsync import ModelSync
from agent.reporting import Reporter, iso
from agent.vector import Frame

logger = logging.getLogger("agent")

BUDGET_FACTOR = 1.5  # the default budget: this times the live model's median latency
LATENCY_WINDOW = 50  # frames in each rolling median
PROBE_EVERY = 50  # a shadow over budget still runs on one frame in this many, to notice when it got faster
MATCH_IOU = 0.5


class LatencyWindow:
    """The median of the last ``size`` latencies (None before the first)."""

    def __init__(self, size: int = LATENCY_WINDOW):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, latency_ms: float) -> None:
        self._values.append(latency_ms)

    def clear(self) -> None:
        self._values.clear()

    def median(self) -> float | None:
        return statistics.median(self._values) if self._values else None


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two ``[x, y, w, h]`` boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def disagreement_score(live: list[Detection], shadow: list[Detection], *, iou_threshold: float = MATCH_IOU) -> float:
    """How much two models' detections on one frame disagree: 0 when they agree box for box, higher is worse.

    Boxes are matched greedily, highest IoU first: same label, IoU ≥ ``iou_threshold``, each box at most once.
    A matched pair adds ``(1 - IoU) + |confidence difference|``; a box left unmatched (a miss or a false alarm of
    one model against the other) adds its confidence, so a confident one weighs most.
    """
    pairs = sorted(
        ((box_iou(a.box, b.box), i, j) for i, a in enumerate(live) for j, b in enumerate(shadow) if a.label == b.label),
        reverse=True,
    )
    used_live, used_shadow = set(), set()
    score = 0.0
    for iou, i, j in pairs:
        if iou < iou_threshold:
            break
        if i in used_live or j in used_shadow:
            continue
        used_live.add(i)
        used_shadow.add(j)
        score += (1 - iou) + abs(live[i].confidence - shadow[j].confidence)
    score += sum(d.confidence for i, d in enumerate(live) if i not in used_live)
    score += sum(d.confidence for j, d in enumerate(shadow) if j not in used_shadow)
    return score


@dataclass
class ShadowResult:
    """What the shadow model said about one frame (its detections above its own threshold)."""

    info: ModelInfo
    latency_ms: float
    detections: list[Detection]

    def as_record(self) -> dict:
        """The telemetry record's ``shadow`` part (API.md)."""
        return {
            "model_id": self.info.model_id,
            "latency_ms": round(self.latency_ms, 2),
            "detections": [d.as_json() for d in self.detections],
        }


class ShadowRunner:
    """Runs the shadow slot of ``models`` within the latency budget; picks the frames worth labelling."""

    def __init__(
        self,
        models: ModelSync,
        reporter: Reporter,
        dataset: str,
        *,
        budget_ms: float | None = None,
        upload_window_s: float = 180.0,
        min_disagreement: float = 0.25,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.models = models
        self.reporter = reporter
        self.dataset = dataset
        self.fixed_budget_ms = budget_ms
        self.upload_window_s = upload_window_s
        self.min_disagreement = min_disagreement
        self.clock = clock
        self.live_latency = LatencyWindow()
        self.shadow_latency = LatencyWindow()
        self._latency_of: str | None = None  # the sha256 of the shadow model ``shadow_latency`` describes
        self._skipped_in_row = 0
        self.ran = self.skipped = 0
        self._window_start: float | None = None
        self._worst: tuple[float, bytes, dict] | None = None  # (score, jpeg, upload fields) of this window

    def budget_ms(self) -> float | None:
        if self.fixed_budget_ms is not None:
            return self.fixed_budget_ms
        live = self.live_latency.median()
        return None if live is None else BUDGET_FACTOR * live

    def run(self, image: Image.Image, live_latency_ms: float) -> ShadowResult | None:
        """Run the shadow model on the frame the live model just saw; None when there is none, or it was skipped
        (over budget) or failed."""
        self.live_latency.add(live_latency_ms)
        slot = self.models.shadow
        detector, info = slot.active if slot is not None else (None, None)
        if detector is None:
            return None
        if self._latency_of != info.sha256:  # a new shadow model: its latency is yet unknown
            self._latency_of, self._skipped_in_row = info.sha256, 0
            self.shadow_latency.clear()
        expected, budget = self.shadow_latency.median(), self.budget_ms()
        if expected is not None and budget is not None and expected > budget:
            if self._skipped_in_row < PROBE_EVERY - 1:
                self._skipped_in_row += 1
                self.skipped += 1
                self.reporter.shadow_skipped(info.model_id)
                return None
        self._skipped_in_row = 0
        started = self.clock()
        try:
            detections = detector.detect(image, conf=info.conf_threshold)
        except Exception as exc:  # noqa: BLE001 - whatever the shadow does, the live model goes on
            logger.error("shadow model %s failed on a frame (%s); dropped on this robot", info.model_id, exc)
            self.reporter.event("shadow_run_failed", model_id=info.model_id, sha256=info.sha256, error=str(exc)[:300])
            slot.reject(info, f"failed while running: {exc}")
            return None
        latency_ms = (self.clock() - started) * 1000
        self.shadow_latency.add(latency_ms)
        self.ran += 1
        return ShadowResult(info, latency_ms, detections)

    def consider_upload(
        self, frame: Frame, live_info: ModelInfo, live: list[Detection], shadow: ShadowResult, now: float
    ) -> float:
        """Keep the frame if it is the worst disagreement of the current window; at the window's end queue the worst
        one as ``shadow_disagreement`` (within the hourly upload budget). Returns the frame's score."""
        score = disagreement_score(live, shadow.detections)
        if self._window_start is None:
            self._window_start = now
        if score >= self.min_disagreement and (self._worst is None or score > self._worst[0]):
            meta = {
                **frame.meta(),
                "model_id": live_info.model_id,
                "model_sha256": live_info.sha256,
                "predictions": [d.as_json() for d in live],
                "shadow": {
                    "model_id": shadow.info.model_id,
                    "model_sha256": shadow.info.sha256,
                    "predictions": [d.as_json() for d in shadow.detections],
                },
                "disagreement": round(score, 4),
            }
            fields = {
                "dataset": self.dataset,
                "source": "shadow_disagreement",
                "captured_at": iso(frame.captured_at),
                "meta": meta,
            }
            self._worst = (score, to_jpeg(frame.image), fields)
        if now - self._window_start >= self.upload_window_s:
            if self._worst is not None:
                _, jpeg, fields = self._worst
                self.reporter.upload_if_allowed(jpeg, fields)
            self._worst, self._window_start = None, now
        return score
