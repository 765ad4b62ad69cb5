"""Every write of the deployments app: promotion, rollback, canaries, robots, telemetry, evaluation and the gate.

Locks that span rows are taken in one fixed order: the Dataset row first, then the live Deployment rows of that
dataset (by id). Two people promoting at once therefore queue on the dataset row instead of both seeing "no live
production" and writing two (the partial unique constraint would reject the second anyway)."""

import hashlib
import hmac
import logging
import secrets
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.deployments import robotstate
from apps.deployments.models import (
    Deployment,
    EnrollmentKey,
    Evaluation,
    GateDecision,
    PromotionPolicy,
    Robot,
    TelemetryRecord,
)
from apps.deployments.robotstate import token_hash
from apps.training.models import ModelVersion
from vectormlops.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from vectormlops.events import broadcast
from vectormlops.inputs import datetime_parse

log = logging.getLogger(__name__)

MAX_TELEMETRY_RECORDS = 500
MIN_ENROLLMENT_KEY_LENGTH = 24
Channel = Deployment.Channel
Action = Deployment.Action


# --- locking and small helpers -------------------------------------------------------------------------------


def _lock_dataset(dataset_id: int) -> tuple[Dataset, dict[str, Deployment]]:
    """Lock the dataset row, then its live deployments (fixed order); return them by channel."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset_id)
    live = list(Deployment.objects.select_for_update().filter(dataset_id=dataset_id, is_live=True).order_by("id"))
    return dataset, {d.channel: d for d in live}


def _end(deployment: Deployment, now: datetime) -> None:
    deployment.is_live = False
    deployment.ended_at = now
    deployment.save(update_fields=["is_live", "ended_at"])


def _person(user):
    """The user to record as the author of a change: a signed-in person, never a robot or anonymous."""
    return user if getattr(user, "is_authenticated", False) and not getattr(user, "is_robot", False) else None


def _canary_close(canary: Deployment, *, dataset: Dataset, reason: str, user, now: datetime) -> Deployment:
    """End the live canary and record it in the history (an END entry); robots fall back to production."""
    _end(canary, now)
    ended = Deployment.objects.create(
        dataset=dataset,
        channel=Channel.CANARY,
        action=Action.END,
        model=canary.model,
        previous=canary,
        canary_percent=canary.canary_percent,
        reason=reason,
        created_by=_person(user),
        is_live=False,
        ended_at=now,
    )
    _changed(dataset, ended)
    return ended


def _deployment_event(deployment: Deployment) -> dict:
    return {
        "id": deployment.pk,
        "channel": deployment.channel,
        "action": deployment.action,
        "model_id": deployment.model_id,
        "version": deployment.model.number if deployment.model_id else None,
        "canary_percent": deployment.canary_percent,
        "reason": deployment.reason,
        "at": deployment.created_at.isoformat() if deployment.created_at else None,
    }


def _changed(dataset: Dataset, deployment: Deployment) -> None:
    """Grow the generation robots' answers are checked against, and tell the browsers following this dataset."""
    robotstate.dataset_changed(dataset.pk)
    broadcast(f"deployments.{dataset.slug}", deployment.action, _deployment_event(deployment))


def _queue_prelabel(dataset: Dataset, model: ModelVersion) -> None:
    """Hand labeling plain data so it can pre-label with the new production model (labeling may not exist yet)."""
    try:
        from apps.labeling.tasks import prelabel_dataset_task
    except ImportError:
        return
    artifact = model.artifacts.filter(format="pt").first() or model.artifacts.filter(format="onnx").first()
    if artifact is None:
        return
    dataset_id, model_id, path = dataset.pk, model.pk, artifact.storage_path

    def _send():
        try:
            prelabel_dataset_task.delay(dataset_id, model_id, path)
        except Exception:  # noqa: BLE001 - pre-labelling is a convenience; a broker hiccup must not fail promotion
            log.warning("could not queue pre-labelling for model %s", model_id, exc_info=True)

    transaction.on_commit(_send)


def _queue_suspect_labels(dataset: Dataset, model: ModelVersion) -> None:
    """After an evaluation, hand labeling plain data so it can rank the approved labels this model doubts most."""
    try:
        from apps.labeling.tasks import suspect_labels_task
    except ImportError:
        return
    artifact = model.artifacts.filter(format="pt").first() or model.artifacts.filter(format="onnx").first()
    if artifact is None:
        return
    dataset_id, model_id, path = dataset.pk, model.pk, artifact.storage_path

    def _send():
        try:
            suspect_labels_task.delay(dataset_id, model_id, path)
        except Exception:  # noqa: BLE001 - a broker hiccup must not fail the evaluation
            log.warning("could not queue suspect labels for model %s", model_id, exc_info=True)

    transaction.on_commit(_send)


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A reason is required.", code="reason_required")
    return reason


# --- promotion, rollback, canary -----------------------------------------------------------------------------


@transaction.atomic
def model_promote(
    *,
    model: ModelVersion,
    channel: str,
    user=None,
    reason: str,
    canary_percent: int | None = None,
    gate_decision: GateDecision | None = None,
) -> Deployment:
    """Put ``model`` live on ``channel`` of its dataset; returns the live deployment (unchanged if already live)."""
    reason = _check_reason(reason)
    if channel not in Channel.values:
        raise ValidationFailed(f"Unknown channel {channel!r}.", code="bad_channel")
    if channel == Channel.CANARY:
        if canary_percent is None or not 1 <= int(canary_percent) <= 100:
            raise ValidationFailed("A canary needs canary_percent between 1 and 100.", code="bad_canary_percent")
        canary_percent = int(canary_percent)
    else:
        canary_percent = None
    if not model.artifacts.exists():
        raise ValidationFailed("This model has no artifacts to deploy.", code="no_artifacts")
    dataset, live = _lock_dataset(model.dataset_id)
    current = live.get(channel)
    if current is not None and current.model_id == model.pk and current.canary_percent == canary_percent:
        return current  # promoting the model already live there changes nothing
    production = live.get(Channel.PRODUCTION)
    if channel == Channel.CANARY and (production is None or production.model_id == model.pk):
        raise ValidationFailed(
            "A canary runs beside a different production model; promote to production first.", code="no_production"
        )
    if gate_decision is None:
        gate_decision = GateDecision.objects.filter(candidate=model).order_by("-created_at", "-id").first()
    now = timezone.now()
    if current is not None:
        _end(current, now)
    deployment = Deployment(
        dataset=dataset,
        channel=channel,
        action=Action.PROMOTE,
        model=model,
        previous=current,
        canary_percent=canary_percent,
        reason=reason,
        created_by=_person(user),
        gate_decision=gate_decision,
        gate_passed=gate_decision.passed if gate_decision else None,
    )
    deployment.full_clean(exclude=["previous", "restores", "gate_decision", "created_by", "model", "dataset"])
    deployment.save()
    if channel == Channel.PRODUCTION:
        canary = live.get(Channel.CANARY)
        if canary is not None and canary.model_id == model.pk:
            # The canary graduated: its channel empties.
            _canary_close(canary, dataset=dataset, reason=f"promoted to production: {reason}", user=user, now=now)
        _queue_prelabel(dataset, model)
    _changed(dataset, deployment)
    return deployment


def rollback_target(current: Deployment) -> Deployment | None:
    """The entry whose model was live before ``current`` on the promotion stack (rollbacks pop, promotions push)."""
    entry = current
    seen = set()
    while entry is not None and entry.action == Action.ROLLBACK and entry.pk not in seen:
        seen.add(entry.pk)
        entry = entry.restores
    if entry is None:
        return None
    return entry.previous


@transaction.atomic
def deployment_rollback(*, dataset: Dataset, channel: str = Channel.PRODUCTION, user=None, reason: str) -> Deployment:
    """Re-deploy the model that was live before the current one; repeatable (v7 → v6 → v5)."""
    reason = _check_reason(reason)
    if channel not in Channel.values:
        raise ValidationFailed(f"Unknown channel {channel!r}.", code="bad_channel")
    dataset, live = _lock_dataset(dataset.pk)
    current = live.get(channel)
    if current is None:
        raise Conflict(f"Nothing is live on {channel}; there is nothing to roll back.", code="nothing_live")
    target = rollback_target(current)
    if target is None or target.model_id is None:
        raise Conflict("There is no earlier model to roll back to.", code="no_previous_deployment")
    now = timezone.now()
    _end(current, now)
    deployment = Deployment.objects.create(
        dataset=dataset,
        channel=channel,
        action=Action.ROLLBACK,
        model_id=target.model_id,
        previous=current,
        restores=target,
        canary_percent=target.canary_percent if channel == Channel.CANARY else None,
        reason=reason,
        created_by=_person(user),
    )
    if channel == Channel.PRODUCTION:
        _queue_prelabel(dataset, deployment.model)
    _changed(dataset, deployment)
    return deployment


@transaction.atomic
def canary_end(*, dataset: Dataset, promote: bool, user=None, reason: str) -> Deployment:
    """End the live canary: promote its model to production, or drop it (robots fall back to production)."""
    reason = _check_reason(reason)
    dataset, live = _lock_dataset(dataset.pk)
    canary = live.get(Channel.CANARY)
    if canary is None:
        raise Conflict("No canary is live for this dataset.", code="no_canary")
    if promote:
        model_promote(model=canary.model, channel=Channel.PRODUCTION, user=user, reason=reason)
        return Deployment.objects.filter(dataset=dataset, channel=Channel.CANARY).order_by("-id").first()
    return _canary_close(canary, dataset=dataset, reason=reason, user=user, now=timezone.now())


def deployed_model_at(dataset: Dataset, channel: str, when: datetime) -> ModelVersion | None:
    """The model that was live on ``channel`` at time ``when`` (None if nothing was)."""
    entry = (
        Deployment.objects.filter(dataset=dataset, channel=channel, created_at__lte=when)
        .exclude(action=Action.END)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=when))
        .select_related("model")
        .order_by("-created_at", "-id")
        .first()
    )
    return entry.model if entry else None


# --- robots ---------------------------------------------------------------------------------------------------


def _new_token() -> str:
    return "vr_" + secrets.token_urlsafe(32)


def _clean_serial(serial: str) -> str:
    serial = (serial or "").strip()
    if not serial or len(serial) > 64 or not all(c.isalnum() or c in "-_." for c in serial):
        raise ValidationFailed("A serial is 1-64 letters, digits, '-', '_' or '.'.", code="bad_serial")
    return serial


@transaction.atomic
def robot_register(*, serial: str, name: str = "") -> tuple[Robot, str]:
    """Register a robot; returns it and its token (shown once: only the token's hash is stored)."""
    serial = _clean_serial(serial)
    if Robot.objects.filter(serial=serial).exists():
        raise Conflict(f"A robot with serial {serial} is already registered.", code="serial_taken")
    token = _new_token()
    robot = Robot(serial=serial, name=(name or "").strip()[:100], token_hash=token_hash(token))
    robot.full_clean()
    try:
        with transaction.atomic():
            robot.save()
    except IntegrityError as exc:  # a concurrent registration of the same serial
        raise Conflict(f"A robot with serial {serial} is already registered.", code="serial_taken") from exc
    return robot, token


def enrollment_enabled() -> bool:
    return bool(settings.ROBOT_ENROLLMENT_KEY) or EnrollmentKey.objects.filter(is_active=True).exists()


def _key_ok(key: str) -> bool:
    if settings.ROBOT_ENROLLMENT_KEY and hmac.compare_digest(key.encode(), settings.ROBOT_ENROLLMENT_KEY.encode()):
        return True
    digest = hashlib.sha256(key.encode()).hexdigest()
    return EnrollmentKey.objects.filter(key_hash=digest, is_active=True).exists()


def robot_enroll(*, key: str, serial: str, name: str = "") -> tuple[Robot, str]:
    """A robot enrols itself with the shared enrolment key; returns it and its token."""
    if not enrollment_enabled():
        raise Forbidden("Enrolment is off: no enrolment key is set.", code="enrollment_disabled")
    if not key or not _key_ok(key):
        raise Forbidden("Wrong enrolment key.", code="bad_enrollment_key")
    return robot_register(serial=serial, name=name)


@transaction.atomic
def enrollment_key_create(*, key: str, note: str = "") -> EnrollmentKey:
    """Store an admin-set enrolment key (its hash)."""
    if len(key or "") < MIN_ENROLLMENT_KEY_LENGTH:
        raise ValidationFailed(
            f"An enrolment key needs at least {MIN_ENROLLMENT_KEY_LENGTH} characters.", code="weak_enrollment_key"
        )
    row = EnrollmentKey(key_hash=hashlib.sha256(key.encode()).hexdigest(), note=note)
    row.full_clean()
    row.save()
    return row


@transaction.atomic
def robot_pin(*, robot: Robot, model: ModelVersion | None, user=None) -> Robot:
    """Pin a robot to a model (it gets that model whatever the channels say), or unpin it with ``model=None``."""
    robot = Robot.objects.select_for_update().get(pk=robot.pk)
    if model is not None and not model.artifacts.exists():
        raise ValidationFailed("This model has no artifacts to deploy.", code="no_artifacts")
    robot.pinned_model = model
    robot.pinned_at = timezone.now() if model else None
    robot.save(update_fields=["pinned_model", "pinned_at"])  # robots' generation grows (receivers.robot_changed)
    if model is not None:
        broadcast(f"deployments.{model.dataset.slug}", "pin", {"robot": robot.serial, "model_id": model.pk})
    return robot


@transaction.atomic
def robot_revoke(*, robot: Robot, user=None) -> Robot:
    """Revoke a robot's token (every process refuses it within the staleness bound: receivers.robot_changed)."""
    robot = Robot.objects.select_for_update().get(pk=robot.pk)
    robot.is_active = False
    robot.save(update_fields=["is_active"])
    return robot


@transaction.atomic
def robot_rename(*, robot: Robot, name: str) -> Robot:
    """Change the display name of a robot (its token and history stay)."""
    robot = Robot.objects.select_for_update().get(pk=robot.pk)
    robot.name = name
    robot.full_clean()
    robot.save(update_fields=["name"])
    return robot


@transaction.atomic
def robot_rotate_token(*, robot: Robot) -> tuple[Robot, str]:
    """Give a robot a new token (the old one stops working); returns the new token, shown once."""
    robot = Robot.objects.select_for_update().get(pk=robot.pk)
    token = _new_token()
    robot.token_hash = token_hash(token)
    robot.is_active = True
    robot.save(update_fields=["token_hash", "is_active"])
    return robot, token


# --- telemetry -----------------------------------------------------------------------------------------------


def _float_or_none(value, field: str, index: int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationFailed(f"records[{index}].{field} must be a number.", code="bad_telemetry")
    return float(value)


@transaction.atomic
def telemetry_ingest(*, robot_id: int, dataset: Dataset, model_id: int | None, records: list) -> int:
    """Store a batch of a robot's telemetry records (at most 500); returns how many were stored."""
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
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValidationFailed(f"records[{index}] must be an object.", code="bad_telemetry")
        captured_at = datetime_parse(
            record.get("captured_at"), field=f"records[{index}].captured_at", code="bad_telemetry"
        )
        detections = record.get("detections") or []
        if not isinstance(detections, list) or not all(isinstance(d, dict) for d in detections):
            raise ValidationFailed(f"records[{index}].detections must be a list of objects.", code="bad_telemetry")
        confidences = [
            float(d["confidence"])
            for d in detections
            if isinstance(d.get("confidence"), int | float) and not isinstance(d.get("confidence"), bool)
        ]
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
                top_confidence=max(confidences) if confidences else None,
                detections=detections,
                brightness=_float_or_none(stats.get("brightness"), "image_stats.brightness", index),
                contrast=_float_or_none(stats.get("contrast"), "image_stats.contrast", index),
            )
        )
    TelemetryRecord.objects.bulk_create(rows, batch_size=500)
    return len(rows)


# --- policy ---------------------------------------------------------------------------------------------------


def policy_for(dataset: Dataset) -> PromotionPolicy:
    """The dataset's promotion policy (created with the defaults on first use)."""
    policy, _ = PromotionPolicy.objects.get_or_create(dataset=dataset)
    return policy


def dataset_by_slug(slug: str) -> Dataset:
    dataset = Dataset.objects.filter(slug=slug).first()
    if dataset is None:
        raise NotFound(f"No dataset {slug!r}.", code="dataset_not_found")
    return dataset


# --- evaluation and the gate ----------------------------------------------------------------------------------


def model_evaluate(*, model: ModelVersion, items=None) -> Evaluation:
    """Evaluate ``model`` on its dataset's current test split (a stored evaluation of the same test set is reused).

    Runs ultralytics for a while: call it outside any transaction (a Celery task)."""
    from apps.deployments import evaluation as ev

    dataset = model.dataset
    classes = list(dataset.classes)
    if list(model.classes) != classes:
        raise ValidationFailed(
            f"Model {model.pk} was trained on classes {model.classes}, the dataset now has {classes}.",
            code="classes_differ",
        )
    items = ev.current_test_set(dataset) if items is None else items
    if not items:
        raise ValidationFailed("The dataset has no approved test images to evaluate on.", code="empty_test_set")
    sha = ev.test_set_sha256(items, classes)
    existing = Evaluation.objects.filter(model=model, test_set_sha256=sha).first()
    if existing is not None:
        return existing
    metrics, stats, seconds = ev.evaluate_model(model, items, classes)
    stats_path = ev.save_stats(model.pk, sha, stats)
    _queue_suspect_labels(dataset, model)
    try:
        with transaction.atomic():
            return Evaluation.objects.create(
                model=model,
                dataset=dataset,
                test_set_sha256=sha,
                image_count=len(items),
                metrics=metrics,
                stats_path=stats_path,
                seconds=seconds,
            )
    except IntegrityError:  # evaluated concurrently by another worker: theirs is as good as ours
        return Evaluation.objects.get(model=model, test_set_sha256=sha)


def _training_images(model: ModelVersion) -> list[tuple[int, str, str]] | None:
    """(id, sha256, phash) of the images the model was trained (and early-stopped) on; None when unknown."""
    from apps.datasets.models import VersionItem

    run = model.run
    if run is None or run.dataset_version_id is None:
        return None
    return list(
        VersionItem.objects.filter(version_id=run.dataset_version_id, split__in=["train", "val"]).values_list(
            "image_id", "image__sha256", "image__phash"
        )
    )


def model_gate(*, model: ModelVersion) -> GateDecision:
    """Evaluate the candidate and the current production model on the same test set and apply the policy."""
    from apps.deployments import evaluation as ev
    from apps.deployments import gate

    dataset = model.dataset
    policy = policy_for(dataset)
    rules = gate.Policy.of(policy)
    items = ev.current_test_set(dataset)
    classes = list(dataset.classes)
    live = Deployment.objects.filter(dataset=dataset, channel=Channel.PRODUCTION, is_live=True).first()
    production = live.model if live and live.model_id != model.pk else None

    training = _training_images(model)
    duplicates = {
        "checked": training is not None,
        "max_distance": policy.near_duplicate_distance,
        "pairs": ev.near_duplicates(training or [], items, policy.near_duplicate_distance),
    }
    if training is None:
        duplicates["note"] = "The model's training data is unknown (no training run with a dataset version)."

    reasons_extra: list[str] = []
    cand_eval = prod_eval = None
    try:
        cand_eval = model_evaluate(model=model, items=items)
    except ValidationFailed as exc:
        return GateDecision.objects.create(
            candidate=model,
            production=production,
            passed=False,
            reasons=[f"The candidate could not be evaluated: {exc.message}"],
            near_duplicates=duplicates,
            policy=rules.as_dict(),
        )
    prod_metrics = None
    if production is not None:
        try:
            prod_eval = model_evaluate(model=production, items=items)
            prod_metrics = prod_eval.metrics
        except ValidationFailed as exc:
            reasons_extra.append(f"The production model could not be evaluated on this test set: {exc.message}")
    decision = gate.decide(candidate=cand_eval.metrics, production=prod_metrics, test_images=len(items), policy=rules)
    passed = decision.passed and not reasons_extra
    reasons = decision.reasons + reasons_extra
    if duplicates["pairs"]:
        reasons.append(
            f"Leakage warning: {len(duplicates['pairs'])} test image(s) have a near-duplicate in the training data."
        )
    ci = []
    if prod_eval is not None:
        cand_stats, prod_stats = ev.load_stats(cand_eval.stats_path), ev.load_stats(prod_eval.stats_path)
        if cand_stats is not None and prod_stats is not None:
            ci = ev.bootstrap_map_diff(cand_stats, prod_stats, classes)
    with transaction.atomic():
        row = GateDecision.objects.create(
            candidate=model,
            production=production,
            candidate_evaluation=cand_eval,
            production_evaluation=prod_eval,
            test_set_sha256=cand_eval.test_set_sha256,
            passed=passed,
            reasons=reasons,
            comparison=decision.comparison,
            map_diff=decision.map_diff,
            map_diff_ci=ci,
            near_duplicates=duplicates,
            policy=rules.as_dict(),
        )
        broadcast(
            f"deployments.{dataset.slug}",
            "gate",
            {"model_id": model.pk, "version": model.number, "passed": passed, "reasons": reasons},
        )
    return row


def model_evaluate_and_gate(*, model: ModelVersion) -> GateDecision:
    """After training: gate the candidate and, when the dataset's policy says so, promote a passing one."""
    decision = model_gate(model=model)
    if decision.passed and policy_for(model.dataset).auto_promote:
        model_promote(
            model=model,
            channel=Channel.PRODUCTION,
            reason="Automatic promotion: the candidate passed the gate. " + " ".join(decision.reasons),
            gate_decision=decision,
        )
    return decision
