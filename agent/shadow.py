"""The shadow model on the main thread: run beside the live model on the same frames, never acted on.

Its detections only go into telemetry (the record's ``shadow`` part) and into ``shadow_disagreement`` uploads; what
the robot shows, says and does comes from the live model alone (``Agent.process_frame`` returns only the live
detections).

It stays within a latency budget: ``--shadow-budget-ms``, else 1.5× the live model's time. Both models are measured
the same way: the shadow runs right after the live model on the same frame, both warm (the shadow slot warms a new
model up after loading it, uncounted; neither session's threads spin after a run, which would steal the CPU from the
other model), and by default the shadow's time on a frame is divided by the live model's on that same frame, so a
busy machine slows both alike. The estimate decays (``Estimate``): one slow frame moves it by at most a
``OUTLIER_FACTOR`` step, a cold start cannot lock the shadow out (no skipping before ``MIN_SAMPLES`` runs), and
while it is over the budget one frame in ``PROBE_EVERY`` runs anyway so a shadow that got faster comes back. A
frame is skipped (and counted) when the estimate is over the budget, so which frames are skipped is predictable.
A shadow model that raises while running is reported, dropped and never loaded again on this robot.
"""

import logging
import math
import time
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

BUDGET_FACTOR = 1.5  # the default budget: the shadow may take this times the live model's time on the same frame
DECAY = 0.2  # weight of a new measurement in an estimate
OUTLIER_FACTOR = 2.0  # one measurement counts at most this many times above (or below) the estimate
MIN_SAMPLES = 3  # runs measured before the shadow may be skipped at all
PROBE_EVERY = 20  # a shadow over budget still runs on one frame in this many, to notice when it got faster
MATCH_IOU = 0.5


class Estimate:
    """A decaying geometric mean of positive measurements (None before the first).

    Each measurement moves the estimate by ``DECAY`` of its log distance, that distance capped at
    ``OUTLIER_FACTOR``: one slow frame (a pause of the machine) cannot push the estimate far, a lasting change moves
    it all the way within a few measurements.
    """

    def __init__(self, decay: float = DECAY, outlier_factor: float = OUTLIER_FACTOR):
        self.decay, self.cap = decay, math.log(outlier_factor)
        self._log: float | None = None
        self.samples = 0

    def add(self, value: float) -> None:
        x = math.log(max(value, 1e-6))
        if self._log is None:
            self._log = x
        else:
            x = min(max(x, self._log - self.cap), self._log + self.cap)
            self._log += self.decay * (x - self._log)
        self.samples += 1

    def clear(self) -> None:
        self._log, self.samples = None, 0

    def value(self) -> float | None:
        return None if self._log is None else math.exp(self._log)


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
        self.live_latency = Estimate()  # the live model's time per frame (every frame)
        self.shadow_latency = Estimate()  # the shadow model's time per frame it ran on
        self.shadow_ratio = Estimate()  # the shadow's time over the live model's on the same frame
        self._latency_of: str | None = None  # the sha256 of the shadow model the estimates describe
        self._skipped_in_row = 0
        self.ran = self.skipped = 0
        self._window_start: float | None = None
        self._worst: tuple[float, bytes, dict] | None = None  # (score, jpeg, upload fields) of this window

    def budget_ms(self) -> float | None:
        """The budget in milliseconds (by default 1.5 x the live model's estimated time, for information)."""
        if self.fixed_budget_ms is not None:
            return self.fixed_budget_ms
        live = self.live_latency.value()
        return None if live is None else BUDGET_FACTOR * live

    def over_budget(self) -> bool:
        """Whether the shadow's estimate is over its budget (never before ``MIN_SAMPLES`` runs were measured)."""
        if self.fixed_budget_ms is not None:
            estimate, budget = self.shadow_latency, self.fixed_budget_ms
        else:
            estimate, budget = self.shadow_ratio, BUDGET_FACTOR
        value = estimate.value()
        return estimate.samples >= MIN_SAMPLES and value is not None and value > budget

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
            self.shadow_ratio.clear()
        if self.over_budget():
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
        self.shadow_ratio.add(latency_ms / max(live_latency_ms, 1e-3))
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
