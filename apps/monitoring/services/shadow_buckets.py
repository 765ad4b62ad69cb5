"""Shadow buckets: the shadow part of telemetry records and the shadow models' skipped frames, folded into
``ShadowHourly`` rows (per robot and fleet, all frames and per lighting slice) exactly once.

Telemetry records are folded in the same chunk and under the same cursor as the rest of their row (aggregation.py),
so a record counts once for both; skipped-frame reports have their own cursor. Both are pruned with the raw
telemetry's retention."""

from datetime import UTC, datetime

from django.db import transaction

from apps.deployments.models import ShadowSkip
from apps.deployments.shadow import lighting_slice
from apps.monitoring.models import AggregationCursor, ShadowHourly

SKIP_CURSOR = "shadow_skipped"
CHUNK = 50_000
PRUNE_CHUNK = 5_000


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class ShadowAccumulator:
    """Additive counters per ShadowHourly key while a chunk is folded."""

    def __init__(self):
        self.buckets: dict[str, dict] = {}

    def _targets(self, dataset_id, model_id, shadow_model_id, robot_id, slice_name, moment) -> list[dict]:
        """The robot's bucket, the fleet's, and the fleet's for the frame's lighting slice."""
        hour = _hour(moment)
        dims = [(None, "")] + ([(robot_id, "")] if robot_id else []) + ([(None, slice_name)] if slice_name else [])
        found = []
        for rid, sname in dims:
            key = ShadowHourly.make_key(dataset_id, model_id, shadow_model_id, rid, sname, hour)
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = {
                    "dataset_id": dataset_id,
                    "model_id": model_id,
                    "shadow_model_id": shadow_model_id,
                    "robot_id": rid,
                    "slice": sname,
                    "hour": hour,
                    **dict.fromkeys(ShadowHourly.COUNTERS, 0),
                }
            found.append(bucket)
        return found

    def add_frame(self, row: dict) -> None:
        """One telemetry record with a shadow part (the values of ``FRAME_FIELDS``)."""
        live_count, shadow_count = row["live_box_count"] or 0, row["shadow_detection_count"] or 0
        matched = row["shadow_matched"] or 0
        for b in self._targets(
            row["dataset_id"],
            row["model_id"],
            row["shadow_model_id"],
            row["robot_id"],
            lighting_slice(row["brightness"]),
            row["captured_at"],
        ):
            b["frames"] += 1
            b["agree_frames"] += int(matched == live_count == shadow_count)
            b["matched_boxes"] += matched
            b["live_boxes"] += live_count
            b["shadow_boxes"] += shadow_count
            b["live_frames_with_detection"] += int(live_count > 0)
            b["shadow_frames_with_detection"] += int(shadow_count > 0)
            if row["top_confidence"] is not None:
                b["live_confidence_count"] += 1
                b["live_confidence_sum"] += row["top_confidence"]
            if row["shadow_top_confidence"] is not None:
                b["shadow_confidence_count"] += 1
                b["shadow_confidence_sum"] += row["shadow_top_confidence"]
            if row["latency_ms"] is not None:
                b["live_latency_count"] += 1
                b["live_latency_sum_ms"] += row["latency_ms"]
            if row["shadow_latency_ms"] is not None:
                b["shadow_latency_count"] += 1
                b["shadow_latency_sum_ms"] += row["shadow_latency_ms"]

    def add_skipped(self, dataset_id, model_id, shadow_model_id, robot_id, moment, frames: int) -> None:
        for b in self._targets(dataset_id, model_id, shadow_model_id, robot_id, "", moment):
            b["skipped"] += frames

    def save(self) -> int:
        """Add the buckets to the stored rows (the caller holds an aggregation cursor's row lock)."""
        if not self.buckets:
            return 0
        keys = list(self.buckets)
        existing = {}
        for start in range(0, len(keys), 500):
            for values in ShadowHourly.objects.filter(key__in=keys[start : start + 500]).values(
                "key", *ShadowHourly.COUNTERS
            ):
                existing[values.pop("key")] = values
        rows = []
        for key, b in self.buckets.items():
            stored = existing.get(key, {})
            rows.append(
                ShadowHourly(
                    key=key,
                    dataset_id=b["dataset_id"],
                    model_id=b["model_id"],
                    shadow_model_id=b["shadow_model_id"],
                    robot_id=b["robot_id"],
                    slice=b["slice"],
                    hour=b["hour"],
                    **{name: stored.get(name, 0) + b[name] for name in ShadowHourly.COUNTERS},
                )
            )
        ShadowHourly.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=[*ShadowHourly.COUNTERS, "updated_at"],
        )
        return len(rows)


FRAME_FIELDS = (
    "dataset_id",
    "model_id",
    "shadow_model_id",
    "robot_id",
    "captured_at",
    "brightness",
    "top_confidence",
    "latency_ms",
    "live_box_count",
    "shadow_detection_count",
    "shadow_top_confidence",
    "shadow_latency_ms",
    "shadow_matched",
)


def shadow_skipped_aggregate(*, cutoff: datetime) -> int:
    """Fold skipped-frame reports received before ``cutoff`` into the buckets (by the hour they arrived); returns
    the buckets touched."""
    from apps.monitoring.services.aggregation import _cursor_locked, _pending

    folded = 0
    while True:
        with transaction.atomic():
            cursor = _cursor_locked(SKIP_CURSOR)
            rows = list(
                _pending(ShadowSkip.objects, cursor, "received_at", cutoff)
                .order_by("id")
                .values_list("id", "dataset_id", "model_id", "shadow_model_id", "robot_id", "received_at", "frames")[
                    :CHUNK
                ]
            )
            if not rows:
                return folded
            acc = ShadowAccumulator()
            for _id, dataset_id, model_id, shadow_model_id, robot_id, received_at, frames in rows:
                acc.add_skipped(dataset_id, model_id, shadow_model_id, robot_id, received_at, frames)
            folded += acc.save()
            cursor.last_id = rows[-1][0]
            cursor.save(update_fields=["last_id", "updated_at"])
        if len(rows) < CHUNK:
            return folded


def folded_rows_prune(model, *, cursor: str, older_than: datetime) -> int:
    """Delete the rows of ``model`` received before ``older_than`` that the aggregation cursor ``cursor`` has passed
    (folded into buckets already); returns how many. Small batches: a long delete would hold locks against the
    ingestion endpoint."""
    done = AggregationCursor.objects.filter(name=cursor).values_list("last_id", flat=True).first() or 0
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                model.objects.filter(id__lte=done, received_at__lt=older_than)
                .order_by("id")
                .values_list("id", flat=True)[:PRUNE_CHUNK]
            )
            if not ids:
                return deleted
            deleted += model.objects.filter(id__in=ids).delete()[0]


def shadow_skipped_prune(*, older_than: datetime) -> int:
    """Delete skipped-frame reports received before ``older_than`` that were folded already."""
    return folded_rows_prune(ShadowSkip, cursor=SKIP_CURSOR, older_than=older_than)
