"""Monitoring services: aggregate and prune telemetry, compute drift, guard canaries, raise and acknowledge alerts.

Every state change of this app happens here; tasks, views, the API and the admin call these functions.
"""

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, Min, Q
from django.utils import timezone
from scipy import stats

from apps.datasets.models import Dataset, Image, VersionItem
from apps.deployments.models import Deployment, Robot, TelemetryRecord
from apps.monitoring import histograms
from apps.monitoring.models import (
    CONFIDENCE_BINS,
    HOURLY_COUNTERS,
    AggregationCursor,
    Alert,
    CanaryPolicy,
    DriftReport,
    HourlyMetric,
)
from apps.training.models import ModelVersion
from vectormlops.errors import Conflict, DomainError, ValidationFailed
from vectormlops.events import broadcast

log = logging.getLogger(__name__)

TELEMETRY_CURSOR = "telemetry"
FEEDBACK_CURSOR = "feedback"
AGGREGATE_CHUNK = 50_000
PRUNE_CHUNK = 5_000
ROBOT_SOURCES = (Image.Source.CAMERA, Image.Source.LOW_CONFIDENCE, Image.Source.FEEDBACK)
DRIFT_LABEL_PRIORITY = 10
TELEMETRY_DRIFT_SAMPLE = 5_000
# Telemetry boxes come without the frame size: take it from the frames robots uploaded, else Vector's 640×360.
VECTOR_FRAME = (640, 360)


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --- aggregation -----------------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    """Additive counters of one (dataset, model, robot, hour) while a chunk is aggregated."""

    dataset_id: int
    model_id: int | None
    robot_id: int | None
    hour: datetime
    frames: int = 0
    frames_with_detection: int = 0
    detections: int = 0
    confidence_count: int = 0
    confidence_sum: float = 0.0
    confidence_hist: list = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    latency_count: int = 0
    latency_sum_ms: float = 0.0
    latency_hist: dict = field(default_factory=dict)
    brightness_count: int = 0
    brightness_sum: float = 0.0
    feedback: dict = field(default_factory=dict)
    feedback_total: int = 0

    COUNTERS = HOURLY_COUNTERS  # the fields added up per bucket

    def add_frame(self, detection_count, top_confidence, latency_ms, brightness) -> None:
        self.frames += 1
        if detection_count:
            self.frames_with_detection += 1
            self.detections += detection_count
        if top_confidence is not None:
            self.confidence_count += 1
            self.confidence_sum += top_confidence
            self.confidence_hist[histograms.confidence_bin(top_confidence)] += 1
        if latency_ms is not None:
            self.latency_count += 1
            self.latency_sum_ms += latency_ms
            key = str(histograms.latency_bin(latency_ms))
            self.latency_hist[key] = self.latency_hist.get(key, 0) + 1
        if brightness is not None:
            self.brightness_count += 1
            self.brightness_sum += brightness

    def add_feedback(self, reason: str) -> None:
        self.feedback[reason] = self.feedback.get(reason, 0) + 1
        self.feedback_total += 1

    def merge_into(self, row: HourlyMetric) -> None:
        for name in self.COUNTERS:
            setattr(row, name, getattr(row, name) + getattr(self, name))
        row.confidence_hist = histograms.list_add(
            list(row.confidence_hist or [0] * CONFIDENCE_BINS), self.confidence_hist
        )
        row.latency_hist = histograms.hist_add(dict(row.latency_hist or {}), self.latency_hist)
        row.feedback = histograms.hist_add(dict(row.feedback or {}), self.feedback)


class _Accumulator:
    """The buckets one chunk touches, found per raw row without building strings or datetimes for each row."""

    def __init__(self):
        self.buckets: dict[str, _Bucket] = {}
        self._targets: dict[tuple, tuple[_Bucket, ...]] = {}

    def targets(self, dataset_id, model_id, robot_id, moment) -> tuple[_Bucket, ...]:
        """The robot's bucket and the fleet bucket (robot empty) a raw row counts in."""
        index = (dataset_id, model_id, robot_id, int(moment.timestamp() // 3600))
        found = self._targets.get(index)
        if found is None:
            hour = _hour(moment)
            found = []
            for rid in (robot_id, None) if robot_id else (None,):
                key = HourlyMetric.make_key(dataset_id, model_id, rid, hour)
                bucket = self.buckets.get(key)
                if bucket is None:
                    bucket = self.buckets[key] = _Bucket(dataset_id, model_id, rid, hour)
                found.append(bucket)
            found = self._targets[index] = tuple(found)
        return found


def _buckets_save(acc: dict) -> int:
    """Add the chunk's buckets to the stored rows (read, add, bulk write); returns rows touched."""
    keys = list(acc)
    stored_fields = ["key", *_Bucket.COUNTERS, "confidence_hist", "latency_hist", "feedback"]
    existing: dict[str, dict] = {}
    for start in range(0, len(keys), 500):
        for values in HourlyMetric.objects.filter(key__in=keys[start : start + 500]).values(*stored_fields):
            existing[values.pop("key")] = values
    now = timezone.now()
    rows = []
    for key, bucket in acc.items():
        # A fresh instance (no pk) for stored rows too: the upsert below matches them by key.
        row = HourlyMetric(
            key=key,
            dataset_id=bucket.dataset_id,
            model_id=bucket.model_id,
            robot_id=bucket.robot_id,
            hour=bucket.hour,
            updated_at=now,
            **existing.get(key, {"confidence_hist": [0] * CONFIDENCE_BINS, "latency_hist": {}, "feedback": {}}),
        )
        bucket.merge_into(row)
        rows.append(row)
    # One multi-row upsert instead of bulk_update (whose CASE WHEN per row costs far more CPU). Read-add-write is
    # safe because the caller holds the aggregation cursor's row lock: only one aggregation runs at a time.
    fields = [*_Bucket.COUNTERS, "confidence_hist", "latency_hist", "feedback", "updated_at"]
    HourlyMetric.objects.bulk_create(
        rows, batch_size=500, update_conflicts=True, unique_fields=["key"], update_fields=fields
    )
    return len(acc)


def _cursor_locked(name: str) -> AggregationCursor:
    AggregationCursor.objects.get_or_create(name=name)
    return AggregationCursor.objects.select_for_update().get(name=name)


def _old_enough_upper(queryset, cursor_id: int, time_field: str, cutoff: datetime) -> int | None:
    """The first id after the cursor that is too recent: aggregation stops before it, so a row whose insert has
    not committed yet (ids are handed out before commit) is never skipped by a cursor that moved past it."""
    return queryset.filter(id__gt=cursor_id, **{f"{time_field}__gt": cutoff}).aggregate(m=Min("id"))["m"]


def _aggregate_telemetry_chunk(cutoff: datetime) -> tuple[int, int]:
    with transaction.atomic():
        cursor = _cursor_locked(TELEMETRY_CURSOR)
        upper = _old_enough_upper(TelemetryRecord.objects, cursor.last_id, "received_at", cutoff)
        rows = TelemetryRecord.objects.filter(id__gt=cursor.last_id)
        if upper is not None:
            rows = rows.filter(id__lt=upper)
        rows = list(
            rows.order_by("id").values_list(
                "id",
                "dataset_id",
                "model_id",
                "robot_id",
                "captured_at",
                "detection_count",
                "top_confidence",
                "latency_ms",
                "brightness",
            )[:AGGREGATE_CHUNK]
        )
        if not rows:
            return 0, 0
        acc = _Accumulator()
        for _id, dataset_id, model_id, robot_id, captured_at, count, top, latency, brightness in rows:
            for bucket in acc.targets(dataset_id, model_id, robot_id, captured_at):
                bucket.add_frame(count, top, latency, brightness)
        touched = _buckets_save(acc.buckets)
        cursor.last_id = rows[-1][0]
        cursor.save(update_fields=["last_id", "updated_at"])
        return len(rows), touched


def feedback_model_id(meta: dict, robot_running_model_id: int | None, valid_model_ids: set[int]) -> int | None:
    """Which model a feedback upload blames: the one the agent says it ran (meta), else what the robot reports."""
    for key in ("model_id", "model"):
        value = (meta or {}).get(key)
        if isinstance(value, int) and value in valid_model_ids:
            return value
        if isinstance(value, str) and value.isdigit() and int(value) in valid_model_ids:
            return int(value)
    return robot_running_model_id if robot_running_model_id in valid_model_ids else None


def feedback_reason(meta: dict) -> str:
    reason = (meta or {}).get("reason") or "unspecified"
    return str(reason)[:40]


def _aggregate_feedback_chunk(cutoff: datetime) -> tuple[int, int, bool]:
    """Feedback uploads are images; the cursor walks all image ids and counts the feedback ones."""
    with transaction.atomic():
        cursor = _cursor_locked(FEEDBACK_CURSOR)
        upper = _old_enough_upper(Image.objects, cursor.last_id, "uploaded_at", cutoff)
        scanned = Image.objects.filter(id__gt=cursor.last_id)
        if upper is not None:
            scanned = scanned.filter(id__lt=upper)
        window = list(scanned.order_by("id").values_list("id", flat=True)[:AGGREGATE_CHUNK])
        if not window:
            return 0, 0, False
        rows = list(
            Image.objects.filter(id__gte=window[0], id__lte=window[-1], source=Image.Source.FEEDBACK).values_list(
                "dataset_id", "robot_serial", "captured_at", "uploaded_at", "meta"
            )
        )
        touched = 0
        if rows:
            robots = {
                serial: (rid, running)
                for serial, rid, running in Robot.objects.filter(serial__in={r[1] for r in rows if r[1]}).values_list(
                    "serial", "id", "running_model_id"
                )
            }
            models_by_dataset = defaultdict(set)
            for mid, did in ModelVersion.objects.filter(dataset_id__in={r[0] for r in rows}).values_list(
                "id", "dataset_id"
            ):
                models_by_dataset[did].add(mid)
            acc = _Accumulator()
            for dataset_id, serial, captured_at, uploaded_at, meta in rows:
                robot_id, running = robots.get(serial, (None, None))
                model_id = feedback_model_id(meta, running, models_by_dataset[dataset_id])
                for bucket in acc.targets(dataset_id, model_id, robot_id, captured_at or uploaded_at):
                    bucket.add_feedback(feedback_reason(meta))
            touched = _buckets_save(acc.buckets)
        cursor.last_id = window[-1]
        cursor.save(update_fields=["last_id", "updated_at"])
        return len(rows), touched, len(window) == AGGREGATE_CHUNK


def telemetry_aggregate(*, until: datetime | None = None) -> dict:
    """Add raw telemetry and feedback uploads not yet aggregated into the hourly buckets; each raw row counts once.

    Only rows received before ``until`` (default: now minus MONITORING_AGGREGATION_LAG_S) are read, and only up to
    the first newer one, so inserts still in flight are picked up by the next run, never skipped."""
    cutoff = until or timezone.now() - timedelta(seconds=settings.MONITORING_AGGREGATION_LAG_S)
    result = {"records": 0, "feedback": 0, "buckets": 0}
    while True:
        count, touched = _aggregate_telemetry_chunk(cutoff)
        result["records"] += count
        result["buckets"] += touched
        if count < AGGREGATE_CHUNK:
            break
    more = True
    while more:
        count, touched, more = _aggregate_feedback_chunk(cutoff)
        result["feedback"] += count
        result["buckets"] += touched
    return result


def telemetry_prune(*, older_than: datetime) -> int:
    """Delete raw telemetry received before ``older_than`` that has been aggregated already; returns rows deleted."""
    if older_than > timezone.now():
        raise ValidationFailed("Refusing to prune telemetry from the future.", code="invalid_prune_time")
    aggregated_up_to = (
        AggregationCursor.objects.filter(name=TELEMETRY_CURSOR).values_list("last_id", flat=True).first() or 0
    )
    deleted = 0
    while True:
        # Small batches: a long delete would hold locks against the ingestion endpoint.
        with transaction.atomic():
            ids = list(
                TelemetryRecord.objects.filter(id__lte=aggregated_up_to, received_at__lt=older_than)
                .order_by("id")
                .values_list("id", flat=True)[:PRUNE_CHUNK]
            )
            if not ids:
                break
            deleted += TelemetryRecord.objects.filter(id__in=ids).delete()[0]
    return deleted


def drift_reports_prune(*, older_than: datetime) -> int:
    """Delete drift reports computed before ``older_than`` (alerts keep their own message); returns rows deleted."""
    return DriftReport.objects.filter(computed_at__lt=older_than).delete()[0]


# --- alerts ----------------------------------------------------------------------------------------------------


def alert_to_dict(alert: Alert) -> dict:
    return {
        "id": alert.id,
        "dataset": alert.dataset.slug,
        "kind": alert.kind,
        "scope": alert.scope,
        "robot": alert.robot.serial if alert.robot_id else None,
        "value": alert.value,
        "threshold": alert.threshold,
        "message": alert.message,
        "details": alert.details,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "occurrences": alert.occurrences,
        "acknowledged": alert.acknowledged,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
    }


def alert_raise(
    *,
    dataset: Dataset,
    kind: str,
    message: str,
    robot: Robot | None = None,
    scope: str | None = None,
    value: float | None = None,
    threshold: float | None = None,
    details: dict | None = None,
    now: datetime | None = None,
) -> tuple[Alert, bool]:
    """Open an alert, or refresh the open one of the same kind and scope (last_seen, value, message).

    Returns (alert, created). A new alert is broadcast on ``alerts.<slug>`` as ``alert.raised``, a refreshed one
    as ``alert.updated``."""
    if kind not in Alert.Kind.values:
        raise ValidationFailed(f"Unknown alert kind {kind!r}.", code="invalid_alert_kind")
    now = now or timezone.now()
    scope = scope or (f"robot:{robot.serial}" if robot else "fleet")
    for _attempt in range(3):
        try:
            with transaction.atomic():
                alert = (
                    Alert.objects.select_for_update()
                    .filter(dataset=dataset, kind=kind, scope=scope, acknowledged=False)
                    .first()
                )
                created = alert is None
                if created:
                    alert = Alert(dataset=dataset, kind=kind, scope=scope, robot=robot, first_seen=now)
                else:
                    alert.occurrences += 1
                alert.value, alert.threshold, alert.message = value, threshold, message
                alert.details = details or {}
                alert.last_seen = max(now, alert.first_seen)
                alert.full_clean()
                alert.save()
                alert.dataset = dataset
                broadcast(
                    f"alerts.{dataset.slug}", "alert.raised" if created else "alert.updated", alert_to_dict(alert)
                )
                return alert, created
        except IntegrityError:
            # Another worker opened the same alert between our read and insert: refresh that one instead.
            continue
    raise Conflict("Could not record the alert (concurrent updates).", code="alert_conflict")


def alert_acknowledge(*, alert: Alert, user) -> Alert:
    """A person has seen the alert; the next occurrence of the same problem opens a new one."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("dataset").get(pk=alert.pk)
        if alert.acknowledged:
            return alert
        alert.acknowledged = True
        alert.acknowledged_by = user if getattr(user, "pk", None) and not getattr(user, "is_robot", False) else None
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["acknowledged", "acknowledged_by", "acknowledged_at"])
        broadcast(f"alerts.{alert.dataset.slug}", "alert.acknowledged", alert_to_dict(alert))
        return alert


# --- drift -----------------------------------------------------------------------------------------------------

IMAGE_FEATURES = ("brightness", "contrast", "sharpness", "color_r", "color_g", "color_b")
BOX_FEATURES = ("box_area", "box_cx", "box_cy")
TELEMETRY_FEATURES = ("telemetry_brightness", "telemetry_contrast")


def _hist_centroid(histogram, channel: int) -> float | None:
    """Mean position (0..1) of one channel of the 8-bin-per-channel colour histogram."""
    if not histogram or len(histogram) < 24:
        return None
    values = np.asarray(histogram[channel * 8 : channel * 8 + 8], dtype=float)
    total = values.sum()
    if total <= 0:
        return None
    return float((values * (np.arange(8) + 0.5) / 8).sum() / total)


def _image_feature_values(rows) -> dict[str, list[float]]:
    """rows: (brightness, contrast, sharpness, color_histogram) tuples → feature name → values."""
    out = {name: [] for name in IMAGE_FEATURES}
    for brightness, contrast, sharpness, histogram in rows:
        out["brightness"].append(brightness)
        out["contrast"].append(contrast)
        # Sharpness (variance of the Laplacian) spans orders of magnitude; compare it on a log scale.
        out["sharpness"].append(math.log1p(max(0.0, sharpness)))
        for channel, name in enumerate(("color_r", "color_g", "color_b")):
            value = _hist_centroid(histogram, channel)
            if value is not None:
                out[name].append(value)
    return out


def _box_feature_values(boxes_with_size) -> dict[str, list[float]]:
    """(box [x, y, w, h], width, height) → relative area, centre x, centre y."""
    out = {name: [] for name in BOX_FEATURES}
    for box, width, height in boxes_with_size:
        try:
            x, y, w, h = (float(v) for v in box[:4])
        except (TypeError, ValueError):
            continue
        if width <= 0 or height <= 0:
            continue
        out["box_area"].append(math.sqrt(max(0.0, w * h) / (width * height)))
        out["box_cx"].append((x + w / 2) / width)
        out["box_cy"].append((y + h / 2) / height)
    return out


def psi(reference, current, bins: int = 10, eps: float = 1e-4) -> float:
    """Population Stability Index over reference-quantile bins: Σ (c − r)·ln(c / r)."""
    reference, current = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    r = np.clip(ref_counts / ref_counts.sum(), eps, None)
    c = np.clip(cur_counts / cur_counts.sum(), eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def drift_compare(reference: dict[str, list[float]], current: dict[str, list[float]]) -> list[dict]:
    """Compare each feature's current sample with its reference.

    A feature drifts when the two-sample Kolmogorov–Smirnov test rejects (p below MONITORING_DRIFT_P_VALUE divided
    by the number of features tested: Bonferroni, so one report's false-alarm rate stays near that p-value) AND the
    PSI reaches MONITORING_DRIFT_PSI_THRESHOLD (the effect is large enough to matter). The Wasserstein distance
    normed by the reference's spread is reported alongside, as Evidently does."""
    min_samples = settings.MONITORING_DRIFT_MIN_SAMPLES
    psi_threshold = settings.MONITORING_DRIFT_PSI_THRESHOLD
    testable = [
        name
        for name in reference
        if len(reference.get(name) or []) >= min_samples and len(current.get(name) or []) >= min_samples
    ]
    alpha = settings.MONITORING_DRIFT_P_VALUE / max(1, len(testable))
    results = []
    for name in reference:
        ref = np.asarray(reference.get(name) or [], dtype=float)
        cur = np.asarray(current.get(name) or [], dtype=float)
        entry = {"feature": name, "n_ref": int(ref.size), "n_cur": int(cur.size), "threshold": psi_threshold}
        if name not in testable:
            entry.update(test="insufficient_data", drifted=False)
            results.append(entry)
            continue
        ks = stats.ks_2samp(ref, cur)
        spread = float(np.std(ref)) or 1e-9
        value = psi(ref, cur)
        entry.update(
            test="ks+psi",
            statistic=round(float(ks.statistic), 6),
            p_value=float(ks.pvalue),
            alpha=alpha,
            psi=round(value, 6),
            wasserstein_normed=round(float(stats.wasserstein_distance(ref, cur)) / spread, 6),
            ref_mean=round(float(ref.mean()), 6),
            cur_mean=round(float(cur.mean()), 6),
            drifted=bool(ks.pvalue < alpha and value >= psi_threshold),
        )
        results.append(entry)
    return results


def _production(dataset: Dataset) -> Deployment | None:
    return (
        Deployment.objects.filter(dataset=dataset, channel=Deployment.Channel.PRODUCTION, is_live=True)
        .select_related("model__run")
        .first()
    )


def drift_reference(*, dataset: Dataset) -> tuple[ModelVersion | None, dict[str, list[float]], int, int | None]:
    """Features of the images (and label boxes) of the production model's training version; also the number of
    its images and the version's id."""
    deployment = _production(dataset)
    model = deployment.model if deployment else None
    version_id = model.run.dataset_version_id if model and model.run_id and model.run else None
    if version_id is None:
        return model, {}, 0, None
    rows = list(
        VersionItem.objects.filter(version_id=version_id).values_list(
            "image_id",
            "image__brightness",
            "image__contrast",
            "image__sharpness",
            "image__color_histogram",
            "boxes",
            "image__width",
            "image__height",
        )
    )
    features = _image_feature_values([r[1:5] for r in rows])
    features.update(_box_feature_values((b.get("box"), r[6], r[7]) for r in rows for b in (r[5] or [])))
    # Telemetry reports the same image statistics the server computes at ingestion.
    features["telemetry_brightness"] = list(features["brightness"])
    features["telemetry_contrast"] = list(features["contrast"])
    return model, features, len(rows), version_id


def _current_features(
    images: list[tuple], telemetry: list[tuple], frame: tuple[int, int] = VECTOR_FRAME
) -> dict[str, list[float]]:
    """images: (id, serial, brightness, contrast, sharpness, histogram); telemetry: (robot_id, b, c, detections)."""
    features = _image_feature_values([r[2:6] for r in images])
    frame_w, frame_h = frame
    features.update(
        _box_feature_values(
            (d.get("box"), frame_w, frame_h) for t in telemetry for d in (t[3] or []) if isinstance(d, dict)
        )
    )
    features["telemetry_brightness"] = [t[1] for t in telemetry if t[1] is not None]
    features["telemetry_contrast"] = [t[2] for t in telemetry if t[2] is not None]
    return features


def _drift_message(scope_label: str, results: list[dict]) -> tuple[str, float]:
    drifted = [r for r in results if r.get("drifted")]
    parts = [
        f"{r['feature']} (PSI {r['psi']:.2f}, KS p={r['p_value']:.1e}, mean {r['ref_mean']:.3g} → {r['cur_mean']:.3g})"
        for r in drifted
    ]
    return f"Data drift on {scope_label}: " + "; ".join(parts), max(r["psi"] for r in drifted)


def _queue_for_labeling(images: list[tuple], reference: dict, drifted: list[str]) -> list[int]:
    """Raise the labeling priority of the current images most unlike the reference on the drifted features."""
    from apps.datasets.services import images_prioritize

    limit = settings.MONITORING_DRIFT_LABEL_SAMPLE
    if not images or limit <= 0:
        return []
    image_features = [name for name in drifted if name in IMAGE_FEATURES]
    scores = np.zeros(len(images))
    if image_features:
        values = _image_feature_values([r[2:6] for r in images])
        for name in image_features:
            ref = np.asarray(reference[name], dtype=float)
            column = np.asarray(values[name], dtype=float)
            if column.size == len(images):
                scores += np.abs(column - np.median(ref)) / (np.std(ref) or 1e-9)
    order = np.argsort(-scores, kind="stable")[:limit]
    ids = [images[int(i)][0] for i in order]
    images_prioritize(image_ids=ids, priority=DRIFT_LABEL_PRIORITY)
    return ids


def drift_compute(*, dataset: Dataset, now: datetime | None = None) -> list[DriftReport]:
    """Compare what robots saw in the last MONITORING_DRIFT_WINDOW_HOURS with the production model's training
    images, fleet-wide and per robot; store a DriftReport for each scope with enough data, raise a drift alert
    naming the offending features, and queue a sample of the drifting images for labeling."""
    now = now or timezone.now()
    window_start = now - timedelta(hours=settings.MONITORING_DRIFT_WINDOW_HOURS)
    model, reference, reference_size, version_id = drift_reference(dataset=dataset)
    if not reference or reference_size < settings.MONITORING_DRIFT_MIN_SAMPLES:
        log.info("drift of %s skipped: no production model with a large enough training version", dataset.slug)
        return []
    images = list(
        Image.objects.filter(
            dataset=dataset, source__in=ROBOT_SOURCES, uploaded_at__gt=window_start, uploaded_at__lte=now
        )
        .exclude(id__in=VersionItem.objects.filter(version_id=version_id).values("image_id"))
        .values_list(
            "id", "robot_serial", "brightness", "contrast", "sharpness", "color_histogram", "status", "width", "height"
        )
    )
    telemetry = list(
        TelemetryRecord.objects.filter(dataset=dataset, captured_at__gt=window_start, captured_at__lte=now)
        .order_by("-captured_at")
        .values_list("robot_id", "brightness", "contrast", "detections")[:TELEMETRY_DRIFT_SAMPLE]
    )
    camera = [(i[7], i[8]) for i in images if i[1]]
    frame = Counter(camera).most_common(1)[0][0] if camera else VECTOR_FRAME
    robots_by_serial = {r.serial: r for r in Robot.objects.filter(serial__in={i[1] for i in images if i[1]})}
    robots_by_id = {r.id: r for r in Robot.objects.filter(id__in={t[0] for t in telemetry})}
    robots_by_serial.update({r.serial: r for r in robots_by_id.values()})

    images_by_serial, telemetry_by_robot = defaultdict(list), defaultdict(list)
    for row in images:
        images_by_serial[row[1]].append(row)
    for row in telemetry:
        telemetry_by_robot[row[0]].append(row)
    scopes: list[tuple[Robot | None, list, list]] = [(None, images, telemetry)]
    for serial, robot in sorted(robots_by_serial.items()):
        scopes.append((robot, images_by_serial[serial], telemetry_by_robot[robot.id]))

    reports = []
    for robot, scope_images, scope_telemetry in scopes:
        current = _current_features(scope_images, scope_telemetry, frame)
        results = drift_compare(reference, current)
        if not any(r["test"] != "insufficient_data" for r in results):
            continue
        drifted = [r["feature"] for r in results if r.get("drifted")]
        with transaction.atomic():
            report = DriftReport.objects.create(
                dataset=dataset,
                robot=robot,
                model=model,
                computed_at=now,
                window_start=window_start,
                reference_size=reference_size,
                current_size=len(scope_images) + len(scope_telemetry),
                features=results,
                drifted=bool(drifted),
                drifted_features=drifted,
            )
            if drifted:
                label = f"robot {robot.serial}" if robot else "the fleet"
                message, value = _drift_message(label, results)
                unlabeled = [i for i in scope_images if i[6] == Image.Status.UNLABELED]
                queued = _queue_for_labeling(unlabeled, reference, drifted)
                alert_raise(
                    dataset=dataset,
                    kind=Alert.Kind.DRIFT,
                    robot=robot,
                    value=value,
                    threshold=settings.MONITORING_DRIFT_PSI_THRESHOLD,
                    message=message,
                    details={"report_id": report.id, "features": drifted, "queued_for_labeling": queued},
                    now=now,
                )
        reports.append(report)
    return reports


# --- canary guard ----------------------------------------------------------------------------------------------


def canary_policy_for(dataset: Dataset) -> CanaryPolicy:
    """The dataset's policy, or the defaults (unsaved) when none was set in the admin."""
    return CanaryPolicy.objects.filter(dataset=dataset).first() or CanaryPolicy(dataset=dataset)


def model_field_metrics(*, dataset: Dataset, model_id: int, since: datetime, until: datetime) -> dict:
    """Frames, detection rate, mean top confidence and feedback per frame of one model over a period (raw rows)."""
    totals = TelemetryRecord.objects.filter(
        dataset=dataset, model_id=model_id, captured_at__gte=since, captured_at__lte=until
    ).aggregate(
        frames=Count("id"),
        with_detection=Count("id", filter=Q(detection_count__gt=0)),
        confidence=Avg("top_confidence"),
    )
    frames = totals["frames"] or 0
    return {
        "model_id": model_id,
        "frames": frames,
        "detection_rate": (totals["with_detection"] / frames) if frames else None,
        "mean_confidence": totals["confidence"],
        "feedback": 0,
        "feedback_rate": None,
    }


def _feedback_by_model(dataset: Dataset, since: datetime, until: datetime) -> dict[int | None, int]:
    rows = list(
        Image.objects.filter(
            dataset=dataset, source=Image.Source.FEEDBACK, uploaded_at__gte=since, uploaded_at__lte=until
        ).values_list("robot_serial", "meta")
    )
    running = dict(Robot.objects.filter(serial__in={s for s, _ in rows if s}).values_list("serial", "running_model_id"))
    valid = set(ModelVersion.objects.filter(dataset=dataset).values_list("id", flat=True))
    counts: dict[int | None, int] = defaultdict(int)
    for serial, meta in rows:
        counts[feedback_model_id(meta, running.get(serial), valid)] += 1
    return counts


def canary_guard_check(*, dataset: Dataset, now: datetime | None = None) -> dict:
    """While a canary is live, compare its field metrics with production's since the canary started; when it is
    worse beyond the dataset's CanaryPolicy with at least min_frames on both sides, end it (no promotion, with the
    reason in the deployment history) and raise a canary alert. Returns what it found and did."""
    from apps.deployments.services import canary_end

    now = now or timezone.now()
    canary = (
        Deployment.objects.filter(dataset=dataset, channel=Deployment.Channel.CANARY, is_live=True)
        .select_related("model")
        .first()
    )
    if canary is None or canary.model_id is None:
        return {"status": "no_canary"}
    production = _production(dataset)
    if production is None or production.model_id is None:
        return {"status": "no_production"}
    policy = canary_policy_for(dataset)
    if not policy.enabled:
        return {"status": "disabled"}
    since = canary.created_at
    feedback = _feedback_by_model(dataset, since, now)
    sides = {}
    for side, deployment in (("canary", canary), ("production", production)):
        metrics = model_field_metrics(dataset=dataset, model_id=deployment.model_id, since=since, until=now)
        metrics["feedback"] = feedback.get(deployment.model_id, 0)
        metrics["feedback_rate"] = metrics["feedback"] / metrics["frames"] if metrics["frames"] else None
        sides[side] = metrics
    c, p = sides["canary"], sides["production"]
    result = {"status": "waiting", "canary": c, "production": p, "min_frames": policy.min_frames}
    if c["frames"] < policy.min_frames or p["frames"] < policy.min_frames:
        return result
    reasons, worst = [], 0.0
    checks = (
        ("detection rate", p["detection_rate"], c["detection_rate"], policy.max_detection_rate_drop, -1),
        ("mean top confidence", p["mean_confidence"], c["mean_confidence"], policy.max_confidence_drop, -1),
        ("feedback per frame", p["feedback_rate"], c["feedback_rate"], policy.max_feedback_rate_increase, 1),
    )
    for label, prod_value, canary_value, limit, direction in checks:
        if prod_value is None or canary_value is None:
            continue
        worse_by = (canary_value - prod_value) * direction
        if worse_by > limit:
            reasons.append(
                f"{label} {canary_value:.3f} vs production {prod_value:.3f} (worse by {worse_by:.3f} > {limit})"
            )
            worst = max(worst, worse_by / limit if limit else math.inf)
    if not reasons:
        result["status"] = "healthy"
        return result
    reason = (
        f"Canary guard: model v{canary.model.number} is worse than production over {c['frames']} / {p['frames']} "
        f"frames since {since:%Y-%m-%d %H:%M} UTC: " + "; ".join(reasons)
    )
    try:
        with transaction.atomic():
            ended = canary_end(dataset=dataset, promote=False, user=None, reason=reason)
            alert, _ = alert_raise(
                dataset=dataset,
                kind=Alert.Kind.CANARY,
                scope=f"model:{canary.model_id}",
                value=worst,
                threshold=1.0,
                message=reason,
                details={"canary": c, "production": p, "deployment_id": ended.id},
                now=now,
            )
    except DomainError as exc:
        # Someone ended or replaced the canary meanwhile: nothing left to stop.
        log.info("canary guard on %s: canary already gone (%s)", dataset.slug, exc)
        return {**result, "status": "gone"}
    return {**result, "status": "ended", "reason": reason, "alert_id": alert.id}
