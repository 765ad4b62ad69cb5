"""Telemetry intake: batches of what robots saw, stored as rows for monitoring."""

from django.db import transaction

from apps.datasets.boxes import detections_clean
from apps.datasets.models import Dataset
from apps.deployments.models import TelemetryRecord
from apps.training.models import ModelVersion
from vectormlops.errors import PayloadTooLarge, ValidationFailed
from vectormlops.inputs import datetime_parse

MAX_TELEMETRY_RECORDS = 500


def _float_or_none(value, field: str, index: int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationFailed(f"records[{index}].{field} must be a number.", code="bad_telemetry")
    return float(value)


@transaction.atomic
def telemetry_ingest(
    *, robot_id: int, dataset: Dataset, model_id: int | None, records: list, shadow_skipped=None
) -> int:
    """Store a batch of a robot's telemetry records (at most 500) with their shadow parts and the frames the shadow
    model skipped; returns how many records were stored. A bad record refuses the whole batch; the boxes of a
    well-formed one are cleaned leniently (``detections_clean``: unusable boxes dropped, at most 50 kept)."""
    from apps.deployments.services.shadow import shadow_models_check, shadow_record_fields, shadow_skipped_store

    if not isinstance(records, list):
        raise ValidationFailed("records must be a list.", code="bad_telemetry")
    if len(records) > MAX_TELEMETRY_RECORDS:
        raise PayloadTooLarge(
            f"At most {MAX_TELEMETRY_RECORDS} records a request ({len(records)} sent).",
            code="too_many_records",
            details={"max": MAX_TELEMETRY_RECORDS, "sent": len(records)},
        )
    if model_id is not None and not ModelVersion.objects.filter(pk=model_id, dataset=dataset).exists():
        raise ValidationFailed(f"Model {model_id} is not a model of {dataset.slug}.", code="unknown_model")
    rows = []
    classes = list(dataset.classes)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValidationFailed(f"records[{index}] must be an object.", code="bad_telemetry")
        captured_at = datetime_parse(
            record.get("captured_at"), field=f"records[{index}].captured_at", code="bad_telemetry"
        )
        raw = record.get("detections") or []
        if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
            raise ValidationFailed(f"records[{index}].detections must be a list of objects.", code="bad_telemetry")
        detections = detections_clean(raw, classes=classes)
        stats = record.get("image_stats") or {}
        if not isinstance(stats, dict):
            raise ValidationFailed(f"records[{index}].image_stats must be an object.", code="bad_telemetry")
        rows.append(
            TelemetryRecord(
                robot_id=robot_id,
                dataset=dataset,
                model_id=model_id,
                captured_at=captured_at,
                latency_ms=_float_or_none(record.get("latency_ms"), "latency_ms", index),
                detection_count=len(detections),
                top_confidence=max((d["confidence"] for d in detections), default=None),
                detections=detections,
                brightness=_float_or_none(stats.get("brightness"), "image_stats.brightness", index),
                contrast=_float_or_none(stats.get("contrast"), "image_stats.contrast", index),
                **shadow_record_fields(record.get("shadow"), index=index, live_detections=detections, classes=classes),
            )
        )
    shadow_models_check(dataset, {row.shadow_model_id for row in rows if row.shadow_model_id})
    shadow_skipped_store(robot_id=robot_id, dataset=dataset, model_id=model_id, entries=shadow_skipped)
    TelemetryRecord.objects.bulk_create(rows, batch_size=500)
    return len(rows)
