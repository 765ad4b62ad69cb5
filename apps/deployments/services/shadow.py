"""The shadow channel: a candidate runs beside the robots' model on a share of the fleet and is never acted on.

Starting, changing and ending a shadow are entries of the append-only deployment history like every other change
(channel ``shadow``), and each bumps the dataset's generation so every process answers robots the new state within
the staleness bound (robotstate). Telemetry's shadow parts and skipped-frame reports are stored here too."""

from django.db import transaction
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.deployments.models import Deployment, GateDecision, ShadowSkip
from apps.deployments.services.promotion import (
    Promotion,
    _changed,
    _channel_close,
    _check_reason,
    _lock_dataset,
    _promote_entry,
)
from apps.training.models import ModelVersion
from vectormlops.errors import Conflict, ValidationFailed

Channel = Deployment.Channel
Action = Deployment.Action
MAX_SKIPPED_ENTRIES = 20  # a batch names at most this many shadow models (the agent runs one at a time)


def _percent(shadow_percent) -> int:
    if isinstance(shadow_percent, bool) or not isinstance(shadow_percent, int) or not 1 <= shadow_percent <= 100:
        raise ValidationFailed("A shadow needs shadow_percent between 1 and 100.", code="bad_shadow_percent")
    return shadow_percent


@transaction.atomic
def shadow_start(
    *, model: ModelVersion, shadow_percent: int = 100, user=None, reason: str, gate_decision=None
) -> Promotion:
    """Run ``model`` in shadow on ``shadow_percent`` % of the fleet (by hash of the serial); replaces a live shadow.
    Returns the live shadow deployment and whether this call changed it (not when this model already shadows at
    this share)."""
    reason = _check_reason(reason)
    shadow_percent = _percent(shadow_percent)
    if not model.artifacts.exists():
        raise ValidationFailed("This model has no artifacts to deploy.", code="no_artifacts")
    dataset, live = _lock_dataset(model.dataset_id)
    current = live.get(Channel.SHADOW)
    if current is not None and current.model_id == model.pk and current.shadow_percent == shadow_percent:
        return Promotion(current, changed=False)
    production = live.get(Channel.PRODUCTION)
    if production is None or production.model_id == model.pk:
        raise ValidationFailed(
            "A shadow runs beside a different production model; promote a model to production first.",
            code="no_production",
        )
    if gate_decision is None:
        gate_decision = GateDecision.objects.filter(candidate=model).order_by("-created_at", "-id").first()
    deployment = _promote_entry(
        dataset=dataset,
        channel=Channel.SHADOW,
        model=model,
        current=current,
        reason=reason,
        user=user,
        gate_decision=gate_decision,
        now=timezone.now(),
        shadow_percent=shadow_percent,
    )
    _changed(dataset, deployment)
    return Promotion(deployment, changed=True)


@transaction.atomic
def shadow_end(*, dataset: Dataset, user=None, reason: str) -> Deployment:
    """End the live shadow of ``dataset`` (recorded in the history); robots drop the shadow model."""
    reason = _check_reason(reason)
    dataset, live = _lock_dataset(dataset.pk)
    shadow = live.get(Channel.SHADOW)
    if shadow is None:
        raise Conflict("No shadow is live for this dataset.", code="no_shadow")
    return _channel_close(shadow, dataset=dataset, reason=reason, user=user, now=timezone.now())


def shadow_graduate(*, dataset: Dataset, live: dict, model: ModelVersion, reason: str, user, now) -> None:
    """Inside a promotion to production (dataset locked): a shadow of the promoted model ends, it now drives."""
    shadow = live.get(Channel.SHADOW)
    if shadow is not None and shadow.model_id == model.pk:
        _channel_close(shadow, dataset=dataset, reason=f"promoted to production: {reason}", user=user, now=now)


def shadow_skipped_store(*, robot_id: int, dataset: Dataset, model_id: int | None, entries) -> int:
    """Store a batch's ``shadow_skipped`` (``[{"model_id", "frames"}]``: frames a shadow model skipped over its latency
    budget); returns the frames stored. Call inside the telemetry batch's transaction."""
    if entries is None:
        return 0
    if not isinstance(entries, list) or len(entries) > MAX_SKIPPED_ENTRIES:
        raise ValidationFailed(
            f"shadow_skipped must be a list of at most {MAX_SKIPPED_ENTRIES} objects.", code="bad_telemetry"
        )
    rows = []
    for index, entry in enumerate(entries):
        shadow_id = entry.get("model_id") if isinstance(entry, dict) else None
        frames = entry.get("frames") if isinstance(entry, dict) else None
        if (
            isinstance(shadow_id, bool)
            or not isinstance(shadow_id, int)
            or isinstance(frames, bool)
            or not isinstance(frames, int)
            or not 0 <= frames <= 1_000_000
        ):
            raise ValidationFailed(
                f"shadow_skipped[{index}] must be {{model_id: integer, frames: 0..1000000}}.", code="bad_telemetry"
            )
        if frames:
            rows.append((shadow_id, frames))
    known = set(ModelVersion.objects.filter(pk__in=[r[0] for r in rows], dataset=dataset).values_list("pk", flat=True))
    unknown = sorted({r[0] for r in rows} - known)
    if unknown:
        raise ValidationFailed(
            f"shadow_skipped names model(s) {unknown} that are not models of {dataset.slug}.", code="unknown_model"
        )
    ShadowSkip.objects.bulk_create(
        [
            ShadowSkip(robot_id=robot_id, dataset=dataset, model_id=model_id, shadow_model_id=sid, frames=n)
            for sid, n in rows
        ]
    )
    return sum(n for _, n in rows)


def shadow_record_fields(part, *, index: int, live_detections, classes: list[str]) -> dict:
    """The TelemetryRecord fields of a record's ``shadow`` part (cleaned and bounded like the live detections);
    ``{}`` when the record has none. A malformed part refuses the batch (400 bad_telemetry), nothing is stored."""
    from apps.deployments.shadow import shadow_part

    if part is None:
        return {}
    cleaned = shadow_part(part, live_detections=live_detections, classes=classes)
    if isinstance(cleaned, str):
        raise ValidationFailed(f"records[{index}].shadow: {cleaned}.", code="bad_telemetry")
    return {
        "shadow_model_id": cleaned.model_id,
        "shadow_latency_ms": cleaned.latency_ms,
        "shadow_detection_count": len(cleaned.detections),
        "shadow_top_confidence": cleaned.top_confidence,
        "shadow_detections": cleaned.detections,
        "shadow_matched": cleaned.matched,
        "live_box_count": cleaned.live_boxes,
    }


def shadow_models_check(dataset: Dataset, model_ids: set[int]) -> None:
    """Refuse shadow parts naming models of another dataset (or none)."""
    if not model_ids:
        return
    known = set(ModelVersion.objects.filter(pk__in=model_ids, dataset=dataset).values_list("pk", flat=True))
    unknown = sorted(model_ids - known)
    if unknown:
        raise ValidationFailed(f"Shadow model(s) {unknown} are not models of {dataset.slug}.", code="unknown_model")
