"""A run's life after its start: cancel, the runner's state changes and heartbeats, and the sweeper that takes
over runs whose worker went silent."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.training.models import EpochMetric, TrainingRun
from apps.training.services.start import training_run_enqueue
from vectormlops.errors import Conflict
from vectormlops.events import broadcast

log = logging.getLogger(__name__)

Status = TrainingRun.Status


def run_broadcast(run: TrainingRun, event: str = "status", **extra) -> None:
    """Tell the run's page what changed."""
    data = {"id": run.pk, "status": run.status, "cancel_requested": run.cancel_requested, **extra}
    broadcast(f"run.{run.pk}", event, data)


def tail_of(text: str, limit: int = 20_000) -> str:
    """The end of a log, as much as a run row keeps."""
    return text[-limit:]


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
    run.log_tail = tail_of(run.log_tail + f"\n[vectormlops] cancel requested by {who}\n")
    fields.append("log_tail")
    run.save(update_fields=fields)
    run_broadcast(run)
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
        run_broadcast(run)
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
    run_broadcast(run, attempt=run.attempts)
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
        locked.log_tail = tail_of(log_tail)
        fields.append("log_tail")
    locked.save(update_fields=fields)
    run.status = status
    run_broadcast(locked)
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
        locked.log_tail = tail_of(log_tail)
    if final_metrics:
        locked.final_metrics = final_metrics
    locked.save()
    run.status = status
    run_broadcast(locked, error=locked.error)
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
        locked.log_tail = tail_of(log_tail)
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
        values["log_tail"] = tail_of(log_tail)
    TrainingRun.objects.filter(pk=run_id, attempts=attempt, status__in=TrainingRun.ACTIVE_STATUSES).update(**values)
    row = TrainingRun.objects.filter(pk=run_id).values("cancel_requested", "attempts", "status").first()
    return bool(row is None or row["cancel_requested"] or row["attempts"] != attempt)


def training_runs_sweep(*, heartbeat_timeout_s: float | None = None, now: datetime | None = None) -> dict:
    """Runs whose worker went silent (preparing/training/evaluating, heartbeat older than the timeout): re-queue
    once, else mark failed with the reason. Returns {"requeued": [ids], "failed": [ids]}."""
    timeout = heartbeat_timeout_s if heartbeat_timeout_s is not None else settings.TRAINING_HEARTBEAT_TIMEOUT_S
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
            why += f" during {run.status} (attempt {run.attempts} of {settings.TRAINING_MAX_ATTEMPTS})"
            if run.attempts < settings.TRAINING_MAX_ATTEMPTS and not run.cancel_requested:
                run.status = Status.QUEUED
                run.heartbeat_at = None
                run.log_tail = tail_of(run.log_tail + f"\n[vectormlops] {why}; re-queued\n")
                run.save(update_fields=["status", "heartbeat_at", "log_tail"])
                training_run_enqueue(run)
                result["requeued"].append(pk)
            else:
                run.status = Status.CANCELLED if run.cancel_requested else Status.FAILED
                run.error = why
                run.finished_at = now
                run.log_tail = tail_of(run.log_tail + f"\n[vectormlops] {why}; marked {run.status}\n")
                run.save(update_fields=["status", "error", "finished_at", "log_tail"])
                result["failed"].append(pk)
            run_broadcast(run, error=run.error)
            log.warning("training run %s: %s", pk, why)
    return result
