"""Training workflows: start, cancel, state changes of a run, model registration, the stale-run sweeper and the
retraining schedule. Views, API views, admin actions and Celery tasks all call these."""

import hashlib
import importlib.util
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.datasets.models import Dataset, DatasetVersion, Image
from apps.training import hooks
from apps.training.models import EpochMetric, ModelArtifact, ModelVersion, RetrainPolicy, TrainingRun
from apps.training.signals import model_trained
from vectormlops.errors import Conflict, ValidationFailed
from vectormlops.events import broadcast

log = logging.getLogger(__name__)

Status = TrainingRun.Status
DEFAULT_BASE = "yolov8n.yaml"
PRODUCTION = "production"
CHUNK = 1024 * 1024


def heartbeat_interval_s() -> float:
    return float(getattr(settings, "TRAINING_HEARTBEAT_S", 10))


def default_heartbeat_timeout_s() -> float:
    """Silence after which the sweeper declares a worker lost; several heartbeat intervals."""
    return float(getattr(settings, "TRAINING_HEARTBEAT_TIMEOUT_S", 120))


def max_attempts() -> int:
    """How many times a run may be started in all (the first start plus re-queues after a lost worker)."""
    return int(getattr(settings, "TRAINING_MAX_ATTEMPTS", 2))


def _run_event(run: TrainingRun, event: str = "status", **extra) -> None:
    data = {"id": run.pk, "status": run.status, "cancel_requested": run.cancel_requested, **extra}
    broadcast(f"run.{run.pk}", event, data)


# --- start ----------------------------------------------------------------------------------------------------


def _ultralytics_config_exists(name: str) -> bool:
    """Whether ultralytics ships this model config, found the way it resolves names (yolov8n.yaml -> yolov8.yaml at
    scale n) but without importing it: torch has no business in the web process."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models"
    filename = Path(name).name
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", filename)
    return any(next(root.rglob(candidate), None) for candidate in {filename, unified})


def _check_base(base: str) -> str:
    """A base is 'production', an ultralytics model config (.yaml) or a local weights file (.pt). Never a download."""
    base = (base or "").strip()
    if "://" in base:
        raise ValidationFailed("A base must be a local file, not a URL.", code="invalid_base", details={"base": base})
    if base == PRODUCTION:
        return base
    if base.endswith((".yaml", ".yml")):
        if Path(base).is_file():
            return base
        if not _ultralytics_config_exists(base):
            raise ValidationFailed(f"Unknown model config {base!r}.", code="invalid_base", details={"base": base})
        return base
    if base.endswith(".pt"):
        if not Path(base).is_file():
            # A bare name such as yolov8n.pt would make ultralytics download it: refuse.
            raise ValidationFailed(
                f"Weights file {base!r} does not exist on this server.", code="invalid_base", details={"base": base}
            )
        return base
    raise ValidationFailed(
        "A base is 'production', a model config (.yaml) or a weights file (.pt).",
        code="invalid_base",
        details={"base": base},
    )


def _positive(name: str, value, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise ValidationFailed(
            f"{name} must be a whole number from {low} to {high}.", code="invalid_hyperparameter", details={name: value}
        )
    return number


@transaction.atomic
def training_run_start(
    *,
    dataset: Dataset,
    version: DatasetVersion | None = None,
    base: str | None = None,
    epochs: int = 30,
    imgsz: int = 320,
    batch: int = 16,
    patience: int = 50,
    seed: int = 0,
    device: str = "auto",
    user=None,
    trigger: str = TrainingRun.Trigger.WEB,
) -> TrainingRun:
    """Create a queued run (freezing a version when none is given) and queue it on the training queue.
    One active run per dataset: a second one is a 409 ``run_in_progress``."""
    # Lock order: dataset first (the same order version_freeze and model registration use).
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    active = TrainingRun.objects.filter(dataset=dataset, status__in=TrainingRun.ACTIVE_STATUSES).first()
    if active is not None:
        raise Conflict(
            f"Run {active.pk} of {dataset.slug} is still {active.status}.",
            code="run_in_progress",
            details={"run_id": active.pk, "status": active.status},
        )
    epochs = _positive("epochs", epochs, 1, 10_000)
    imgsz = _positive("imgsz", imgsz, 32, 4096)
    batch = _positive("batch", batch, 1, 1024)
    patience = _positive("patience", patience, 1, 10_000)
    if imgsz % 32:
        raise ValidationFailed(
            "imgsz must be a multiple of 32.", code="invalid_hyperparameter", details={"imgsz": imgsz}
        )
    device = (device or "auto").strip()
    if trigger not in TrainingRun.Trigger.values:
        raise ValidationFailed(f"Unknown trigger {trigger!r}.", code="invalid_trigger")

    base_model = None
    if base is None or str(base).strip() == "":
        base_model = hooks.production_model_for(dataset)
        base = PRODUCTION if base_model is not None else DEFAULT_BASE
    base = _check_base(str(base))
    if base == PRODUCTION:
        base_model = base_model or hooks.production_model_for(dataset)
        if base_model is None:
            raise ValidationFailed(
                f"{dataset.slug} has no production model to fine-tune.",
                code="no_production_model",
                details={"dataset": dataset.slug},
            )
        if not base_model.artifacts.filter(format=ModelArtifact.Format.PT).exists():
            raise ValidationFailed("The production model has no .pt weights to fine-tune.", code="no_weights")

    if version is None:
        from apps.datasets.services import version_freeze

        version = version_freeze(dataset=dataset, user=user, note="frozen for training")
    elif version.dataset_id != dataset.pk:
        raise ValidationFailed("That version belongs to another dataset.", code="version_mismatch")
    if not (version.counts or {}).get("images", {}).get("train"):
        raise ValidationFailed(
            f"Version {version.number} has no training images.",
            code="version_too_small",
            details={"version": version.pk, "counts": version.counts},
        )

    run = TrainingRun(
        dataset=dataset,
        dataset_version=version,
        base=base,
        base_model=base_model,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        patience=patience,
        seed=int(seed),
        device=device[:32],
        trigger=trigger,
        created_by=user if getattr(user, "pk", None) and not getattr(user, "is_robot", False) else None,
    )
    run.full_clean()
    run.save()
    _enqueue(run)
    broadcast(f"dataset.{dataset.slug}", "training_run", {"id": run.pk, "status": run.status})
    return run


def _enqueue(run: TrainingRun) -> None:
    """Queue the run's task after commit; the task id is stored so the admin can see which message runs it."""
    from celery import uuid

    task_id = uuid()
    TrainingRun.objects.filter(pk=run.pk).update(celery_task_id=task_id)
    run.celery_task_id = task_id

    def send():
        from apps.training.tasks import training_run_task

        training_run_task.apply_async(args=[run.pk], task_id=task_id)

    transaction.on_commit(send)


# --- cancel -----------------------------------------------------------------------------------------------------


@transaction.atomic
def training_run_cancel(*, run: TrainingRun, user=None) -> TrainingRun:
    """Cooperative cancel: a queued run ends now; a running one stops at the next epoch boundary (or sooner)."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if not run.is_active:
        raise Conflict(f"Run {run.pk} has already ended ({run.status}).", code="run_not_active")
    run.cancel_requested = True
    fields = ["cancel_requested"]
    if run.status == Status.QUEUED:
        # Nobody has claimed it yet; the worker will see the final status and skip it.
        run.status = Status.CANCELLED
        run.finished_at = timezone.now()
        fields += ["status", "finished_at"]
    who = getattr(user, "username", None) or "someone"
    run.log_tail = _tail(run.log_tail + f"\n[vectormlops] cancel requested by {who}\n")
    fields.append("log_tail")
    run.save(update_fields=fields)
    _run_event(run)
    return run


# --- state changes used by the runner ------------------------------------------------------------------------


@transaction.atomic
def training_run_claim(*, run_id: int, task_id: str = "", environment: dict | None = None) -> TrainingRun | None:
    """A worker takes a queued run (queued -> preparing, one more attempt). None when there is nothing to do:
    the run is gone, cancelled, or already taken (a redelivered message after the sweeper re-queued it)."""
    run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != Status.QUEUED:
        log.info("training run %s: nothing to do (%s)", run_id, run.status if run else "missing")
        return None
    if run.cancel_requested:
        run.status = Status.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        _run_event(run)
        return None
    environment = environment or {}
    now = timezone.now()
    run.status = Status.PREPARING
    run.attempts += 1
    run.started_at = now
    run.heartbeat_at = now
    run.finished_at = None
    run.error = ""
    run.worker_host = str(environment.get("worker_host", ""))[:255]
    run.code_revision = str(environment.get("code_revision", ""))[:64]
    run.package_versions = environment.get("package_versions", {})
    if task_id:
        run.celery_task_id = task_id[:64]
    run.save()
    # A re-queued run starts its epochs afresh.
    EpochMetric.objects.filter(run=run).delete()
    _run_event(run, attempt=run.attempts)
    return run


@transaction.atomic
def training_run_advance(*, run: TrainingRun, status: str, attempt: int, log_tail: str | None = None) -> bool:
    """Move a running run forward (preparing -> training -> evaluating). False when the run is no longer this
    attempt's to move (cancelled, failed by the sweeper, re-queued): the caller must stop."""
    locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if locked.attempts != attempt or locked.status not in (Status.PREPARING, Status.TRAINING, Status.EVALUATING):
        return False
    locked.status = status
    locked.heartbeat_at = timezone.now()
    fields = ["status", "heartbeat_at"]
    if log_tail is not None:
        locked.log_tail = _tail(log_tail)
        fields.append("log_tail")
    locked.save(update_fields=fields)
    run.status = status
    _run_event(locked)
    return True


@transaction.atomic
def training_run_finish(
    *, run: TrainingRun, status: str, attempt: int, error: str = "", log_tail: str | None = None, final_metrics=None
) -> bool:
    """End a run as failed or cancelled (success goes through model_version_register). False when another
    attempt or the sweeper already owns the run's fate."""
    if status not in (Status.FAILED, Status.CANCELLED):
        raise ValueError(status)
    locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if locked.attempts != attempt or not locked.is_active:
        return False
    locked.status = status
    locked.finished_at = timezone.now()
    locked.error = error[:10_000]
    if log_tail is not None:
        locked.log_tail = _tail(log_tail)
    if final_metrics:
        locked.final_metrics = final_metrics
    locked.save()
    run.status = status
    _run_event(locked, error=locked.error)
    return True


def epoch_metric_record(
    *, run: TrainingRun, attempt: int, epoch: int, losses: dict, metrics: dict, seconds: float, log_tail: str
) -> bool:
    """Store one epoch's metrics and beat the heart. Returns True when the run should stop (cancel requested,
    or the run is no longer this attempt's)."""
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if locked.attempts != attempt or locked.status != Status.TRAINING:
            return True
        EpochMetric.objects.update_or_create(
            run=locked,
            epoch=epoch,
            defaults={
                "losses": losses,
                "precision": metrics.get("precision"),
                "recall": metrics.get("recall"),
                "map50": metrics.get("map50"),
                "map50_95": metrics.get("map50_95"),
                "seconds": seconds,
            },
        )
        locked.heartbeat_at = timezone.now()
        locked.log_tail = _tail(log_tail)
        locked.save(update_fields=["heartbeat_at", "log_tail"])
        stop = locked.cancel_requested
    from vectormlops.events import broadcast_now

    broadcast_now(
        f"run.{run.pk}",
        "epoch",
        {
            "id": run.pk,
            "epoch": epoch,
            "epochs": locked.epochs,
            "losses": losses,
            **{k: metrics.get(k) for k in ("precision", "recall", "map50", "map50_95")},
            "seconds": seconds,
            "log_tail": locked.log_tail[-4000:],
        },
    )
    return stop


def training_run_heartbeat(*, run_id: int, attempt: int, log_tail: str | None = None) -> bool:
    """The worker is alive. Returns whether a cancel was requested. One UPDATE, no lock."""
    values = {"heartbeat_at": timezone.now()}
    if log_tail is not None:
        values["log_tail"] = _tail(log_tail)
    TrainingRun.objects.filter(pk=run_id, attempts=attempt, status__in=TrainingRun.ACTIVE_STATUSES).update(**values)
    row = TrainingRun.objects.filter(pk=run_id).values("cancel_requested", "attempts", "status").first()
    return bool(row is None or row["cancel_requested"] or row["attempts"] != attempt)


def _tail(text: str, limit: int = 20_000) -> str:
    return text[-limit:]


# --- model registration ------------------------------------------------------------------------------------


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@transaction.atomic
def model_version_register(
    *,
    run: TrainingRun,
    attempt: int,
    weights_path: Path,
    onnx_path: Path,
    metrics: dict,
    final_metrics: dict,
    log_tail: str | None = None,
) -> ModelVersion:
    """Store both artifacts with their sha256 and size, number the model per dataset under a row lock, mark the
    run succeeded and announce ``model_trained`` on commit. All or nothing: stored files are removed when any
    step fails, so a partial model is never registered."""
    dataset = Dataset.objects.select_for_update().get(pk=run.dataset_id)
    locked = TrainingRun.objects.select_for_update(of=("self",)).select_related("dataset_version").get(pk=run.pk)
    if locked.attempts != attempt or locked.status != Status.EVALUATING:
        raise Conflict(f"Run {run.pk} is no longer registrable ({locked.status}).", code="run_not_registrable")
    if locked.cancel_requested:
        raise Conflict(f"Run {run.pk} was cancelled.", code="run_cancelled")
    number = (ModelVersion.objects.filter(dataset=dataset).aggregate(n=Max("number"))["n"] or 0) + 1
    stored: list[str] = []
    try:
        model = ModelVersion(
            dataset=dataset,
            number=number,
            run=locked,
            classes=list(locked.dataset_version.classes if locked.dataset_version else dataset.classes),
            imgsz=locked.imgsz,
            conf_threshold=0.25,
            metrics=metrics,
        )
        model.full_clean(exclude=["run"])
        model.save()
        for fmt, path in ((ModelArtifact.Format.PT, Path(weights_path)), (ModelArtifact.Format.ONNX, Path(onnx_path))):
            sha256, size = _sha256_of(path)
            if size == 0:
                raise ValueError(f"{path.name} is empty")
            with open(path, "rb") as handle:
                name = default_storage.save(f"models/{dataset.slug}/{number}/model.{fmt}", File(handle))
            stored.append(name)
            if default_storage.size(name) != size:
                raise OSError(f"stored {name} has the wrong size")
            ModelArtifact.objects.create(model=model, format=fmt, storage_path=name, sha256=sha256, size=size)
        locked.status = Status.SUCCEEDED
        locked.finished_at = timezone.now()
        locked.final_metrics = final_metrics
        locked.heartbeat_at = locked.finished_at
        if log_tail is not None:
            locked.log_tail = _tail(log_tail)
        locked.save()
    except BaseException:
        for name in stored:
            try:
                default_storage.delete(name)
            except Exception:  # noqa: BLE001 - best effort; the row is rolled back either way
                log.warning("could not delete %s", name, exc_info=True)
        raise
    run.status = locked.status
    _run_event(locked, model_id=model.pk, model_number=model.number)
    broadcast(f"dataset.{dataset.slug}", "model_trained", {"model_id": model.pk, "number": model.number})
    # robust: a failing receiver is logged and must not turn a committed success into a reported failure.
    transaction.on_commit(lambda: model_trained.send(sender=ModelVersion, model_version=model, run=locked), robust=True)
    return model


# --- sweeper ---------------------------------------------------------------------------------------------------


def training_runs_sweep(*, heartbeat_timeout_s: float | None = None, now: datetime | None = None) -> dict:
    """Runs whose worker went silent (preparing/training/evaluating, heartbeat older than the timeout): re-queue
    once, else mark failed with the reason. Returns {"requeued": [ids], "failed": [ids]}."""
    timeout = heartbeat_timeout_s if heartbeat_timeout_s is not None else default_heartbeat_timeout_s()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=timeout)
    running = (Status.PREPARING, Status.TRAINING, Status.EVALUATING)
    candidates = list(
        TrainingRun.objects.filter(status__in=running, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    ) + list(TrainingRun.objects.filter(status__in=running, heartbeat_at__isnull=True).values_list("pk", flat=True))
    result = {"requeued": [], "failed": []}
    for pk in candidates:
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=pk)
            if run.status not in running or (run.heartbeat_at and run.heartbeat_at >= cutoff):
                continue  # it moved on while we looked
            silent = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else None
            why = f"worker lost: no heartbeat for {silent:.0f} s" if silent is not None else "worker lost"
            why += f" during {run.status} (attempt {run.attempts} of {max_attempts()})"
            if run.attempts < max_attempts() and not run.cancel_requested:
                run.status = Status.QUEUED
                run.heartbeat_at = None
                run.log_tail = _tail(run.log_tail + f"\n[vectormlops] {why}; re-queued\n")
                run.save(update_fields=["status", "heartbeat_at", "log_tail"])
                _enqueue(run)
                result["requeued"].append(pk)
            else:
                run.status = Status.CANCELLED if run.cancel_requested else Status.FAILED
                run.error = why
                run.finished_at = now
                run.log_tail = _tail(run.log_tail + f"\n[vectormlops] {why}; marked {run.status}\n")
                run.save(update_fields=["status", "error", "finished_at", "log_tail"])
                result["failed"].append(pk)
            _run_event(run, error=run.error)
            log.warning("training run %s: %s", pk, why)
    return result


# --- retraining schedule ----------------------------------------------------------------------------------------


def retrain_reasons(*, policy: RetrainPolicy, now: datetime | None = None) -> list[str]:
    """Why a dataset is due for retraining (empty: not due). Due when enough approved images are not yet in the
    last run's version, or when both the production model and the last run are older than the maximum age."""
    now = now or timezone.now()
    dataset = policy.dataset
    if TrainingRun.objects.filter(dataset=dataset, status__in=TrainingRun.ACTIVE_STATUSES).exists():
        return []
    approved = Image.objects.filter(dataset=dataset, status=Image.Status.APPROVED)
    if not approved.exists():
        return []
    last_run = TrainingRun.objects.filter(dataset=dataset).order_by("-queued_at", "-pk").first()
    new = approved
    if last_run is not None and last_run.dataset_version_id:
        new = approved.exclude(version_items__version_id=last_run.dataset_version_id)
    reasons = []
    new_count = new.count()
    if new_count >= policy.min_new_approved_images:
        reasons.append(f"{new_count} new approved images (threshold {policy.min_new_approved_images})")
    max_age = timedelta(days=policy.max_model_age_days)
    production = hooks.production_model_for(dataset)
    if (
        production is not None
        and production.created_at < now - max_age
        and (last_run is None or last_run.queued_at < now - max_age)
    ):
        reasons.append(f"production model v{production.number} is older than {policy.max_model_age_days} days")
    return reasons


def retrain_due_datasets(*, now: datetime | None = None) -> list[TrainingRun]:
    """Start a run for every enabled policy whose dataset is due and not already training (Celery beat)."""
    started = []
    for policy in RetrainPolicy.objects.filter(enabled=True).select_related("dataset").order_by("dataset_id"):
        reasons = retrain_reasons(policy=policy, now=now)
        if not reasons:
            continue
        try:
            run = training_run_start(
                dataset=policy.dataset,
                base=policy.base or None,
                epochs=policy.epochs,
                imgsz=policy.imgsz,
                batch=policy.batch,
                trigger=TrainingRun.Trigger.SCHEDULE,
            )
        except (Conflict, ValidationFailed) as exc:
            log.warning("scheduled retraining of %s not started: %s", policy.dataset.slug, exc.message)
            continue
        TrainingRun.objects.filter(pk=run.pk).update(log_tail=f"[vectormlops] scheduled: {'; '.join(reasons)}\n")
        started.append(run)
    return started
