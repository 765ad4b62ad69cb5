"""Aggregation: fold raw telemetry and feedback uploads into hourly buckets exactly once; prune aggregated raw rows."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from apps.datasets.models import Dataset, Image
from apps.deployments.models import Robot, TelemetryRecord
from apps.monitoring import histograms
from apps.monitoring.models import CONFIDENCE_BINS, HOURLY_COUNTERS, AggregationCursor, HourlyMetric
from apps.monitoring.selectors import feedback_model_id, feedback_reason
from apps.monitoring.services.shadow_buckets import (
    FRAME_FIELDS,
    ShadowAccumulator,
    folded_rows_prune,
    shadow_skipped_aggregate,
    shadow_skipped_prune,
)
from apps.training.models import ModelVersion
from vectormlops.errors import ValidationFailed
from vectormlops.events import broadcast_now

TELEMETRY_CURSOR = "telemetry"
FEEDBACK_CURSOR = "feedback"
AGGREGATE_CHUNK = 50_000


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


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


def _buckets_save(acc: dict, touched_datasets: set) -> int:
    """Add the chunk's buckets to the stored rows (read, add, bulk write); returns rows touched."""
    touched_datasets.update(bucket.dataset_id for bucket in acc.values())
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


def _pending(queryset, cursor: AggregationCursor, time_field: str, cutoff: datetime):
    """Rows after the cursor, up to the first one that is too recent: aggregation stops before it, so a row whose
    insert has not committed yet (ids are handed out before commit) is never skipped by a cursor that moved past it."""
    after = queryset.filter(id__gt=cursor.last_id)
    upper = after.filter(**{f"{time_field}__gt": cutoff}).aggregate(m=Min("id"))["m"]
    return after if upper is None else after.filter(id__lt=upper)


def _aggregate_telemetry_chunk(cutoff: datetime, touched_datasets: set) -> tuple[int, int]:
    with transaction.atomic():
        cursor = _cursor_locked(TELEMETRY_CURSOR)
        rows = list(
            _pending(TelemetryRecord.objects, cursor, "received_at", cutoff)
            .order_by("id")
            .values_list(
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
        touched = _buckets_save(acc.buckets, touched_datasets)
        # The same records' shadow parts, under the same cursor: each counts once in the shadow buckets too.
        shadow = ShadowAccumulator()
        for row in TelemetryRecord.objects.filter(
            id__gte=rows[0][0], id__lte=rows[-1][0], shadow_model__isnull=False
        ).values(*FRAME_FIELDS):
            shadow.add_frame(row)
        touched += shadow.save()
        cursor.last_id = rows[-1][0]
        cursor.save(update_fields=["last_id", "updated_at"])
        return len(rows), touched


def _aggregate_feedback_chunk(cutoff: datetime, touched_datasets: set) -> tuple[int, int, bool]:
    """Feedback uploads are images; the cursor walks all image ids and counts the feedback ones."""
    with transaction.atomic():
        cursor = _cursor_locked(FEEDBACK_CURSOR)
        scanned = _pending(Image.objects, cursor, "uploaded_at", cutoff)
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
            touched = _buckets_save(acc.buckets, touched_datasets)
        cursor.last_id = window[-1]
        cursor.save(update_fields=["last_id", "updated_at"])
        return len(rows), touched, len(window) == AGGREGATE_CHUNK


def telemetry_aggregate(*, until: datetime | None = None) -> dict:
    """Add raw telemetry and feedback uploads not yet aggregated into the hourly buckets; each raw row counts once.

    Only rows received before ``until`` (default: now minus MONITORING_AGGREGATION_LAG_S) are read, and only up to
    the first newer one, so inserts still in flight are picked up by the next run, never skipped."""
    cutoff = until or timezone.now() - timedelta(seconds=settings.MONITORING_AGGREGATION_LAG_S)
    result = {"records": 0, "feedback": 0, "buckets": 0}
    touched_datasets: set[int] = set()
    while True:
        count, touched = _aggregate_telemetry_chunk(cutoff, touched_datasets)
        result["records"] += count
        result["buckets"] += touched
        if count < AGGREGATE_CHUNK:
            break
    result["buckets"] += shadow_skipped_aggregate(cutoff=cutoff)
    more = True
    while more:
        count, touched, more = _aggregate_feedback_chunk(cutoff, touched_datasets)
        result["feedback"] += count
        result["buckets"] += touched
    # Open monitoring pages redraw their charts.
    for slug in Dataset.objects.filter(id__in=touched_datasets).values_list("slug", flat=True):
        broadcast_now(f"alerts.{slug}", "metrics.updated", {"dataset": slug})
    return result


def telemetry_prune(*, older_than: datetime) -> int:
    """Delete raw telemetry received before ``older_than`` that has been aggregated already; returns rows deleted."""
    if older_than > timezone.now():
        raise ValidationFailed("Refusing to prune telemetry from the future.", code="invalid_prune_time")
    deleted = folded_rows_prune(TelemetryRecord, cursor=TELEMETRY_CURSOR, older_than=older_than)
    return deleted + shadow_skipped_prune(older_than=older_than)
