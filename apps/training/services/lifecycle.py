"""A run's life after its start: cancel, the runner's state changes and heartbeats, and the sweeper that takes
over runs whose worker went silent."""

import logging
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.training.models import EpochMetric, TrainingRun
from apps.training.services.start import training_run_enqueue
from vectormlops.broker import broker_message_restore, broker_messages, stale_deliveries
from vectormlops.errors import Conflict
from vectormlops.events import broadcast

log = logging.getLogger(__name__)

Status = TrainingRun.Status
RUNNING = (Status.PREPARING, Status.TRAINING, Status.EVALUATING)
TRAINING_TASK = "apps.training.tasks.training_run_task"


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
    if locked.attempts != attempt or locked.status not in RUNNING:
        # Queued again by the sweeper (this worker was taken for lost) or ended: the next attempt owns it now.
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


def _pulse_key(run_id: int, attempt: int) -> str:
    return f"training:pulse:{run_id}:{attempt}"


def training_run_pulse(*, run_id: int, attempt: int) -> None:
    """The heartbeat's second path, through Redis (the cache): a live worker whose database writes fail for a while
    (a database glitch, a lock wait, a full connection pool) still shows it is alive, and the sweeper leaves its run
    alone. Only both paths failing for the whole timeout makes a live run look lost."""
    cache.set(_pulse_key(run_id, attempt), time.time(), timeout=2 * settings.TRAINING_HEARTBEAT_TIMEOUT_S + 60)


def _last_pulse(run: TrainingRun) -> datetime | None:
    try:
        value = cache.get(_pulse_key(run.pk, run.attempts))
    except Exception:  # noqa: BLE001 - Redis down: judge by the database heartbeat alone
        log.warning("cannot read the pulse of run %s", run.pk, exc_info=True)
        return None
    return datetime.fromtimestamp(float(value), UTC) if value else None


def training_runs_sweep(*, heartbeat_timeout_s: float | None = None, now: datetime | None = None) -> dict:
    """Nothing stays active without an owner. Runs whose worker went silent (no heartbeat in the database nor a
    pulse in Redis within the timeout) are re-queued, or failed with the reason after the last attempt; queued runs
    whose message the broker lost are published again; folders of ended runs are removed.
    Returns {"requeued", "failed", "republished", "folders_removed"}: lists of run ids."""
    now = now or timezone.now()
    result = _sweep_silent_runs(heartbeat_timeout_s=heartbeat_timeout_s, now=now)
    result["republished"] = _republish_lost_messages(now=now, skip=set(result["requeued"]))
    result["folders_removed"] = training_folders_prune()
    return result


def _sweep_silent_runs(*, heartbeat_timeout_s: float | None, now: datetime) -> dict:
    timeout = heartbeat_timeout_s if heartbeat_timeout_s is not None else settings.TRAINING_HEARTBEAT_TIMEOUT_S
    cutoff = now - timedelta(seconds=timeout)
    candidates = list(
        TrainingRun.objects.filter(status__in=RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    ) + list(TrainingRun.objects.filter(status__in=RUNNING, heartbeat_at__isnull=True).values_list("pk", flat=True))
    result = {"requeued": [], "failed": []}
    for pk in candidates:
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=pk)
            if run.status not in RUNNING or (run.heartbeat_at and run.heartbeat_at >= cutoff):
                continue  # it moved on while we looked
            pulse = _last_pulse(run)
            if pulse is not None and pulse >= cutoff:
                continue  # alive: its database writes fail, its pulse in Redis does not
            beats = [moment for moment in (run.heartbeat_at, pulse) if moment is not None]
            silent = f"no heartbeat for {(now - max(beats)).total_seconds():.0f} s" if beats else "no heartbeat"
            why = (
                f"the worker running it stopped answering (killed, crashed or cut off): {silent} during {run.status},"
                f" attempt {run.attempts} of {settings.TRAINING_MAX_ATTEMPTS}"
            )
            if run.attempts < settings.TRAINING_MAX_ATTEMPTS and not run.cancel_requested:
                run.status = Status.QUEUED
                run.heartbeat_at = None
                run.log_tail = tail_of(run.log_tail + f"\n[vectormlops] worker lost: {why}; re-queued\n")
                run.save(update_fields=["status", "heartbeat_at", "log_tail"])
                training_run_enqueue(run)
                result["requeued"].append(pk)
            else:
                run.status = Status.CANCELLED if run.cancel_requested else Status.FAILED
                run.error = f"Worker lost: {why}." + ("" if run.cancel_requested else " No attempts left.")
                run.finished_at = now
                run.log_tail = tail_of(run.log_tail + f"\n[vectormlops] worker lost: {why}; marked {run.status}\n")
                run.save(update_fields=["status", "error", "finished_at", "log_tail"])
                result["failed"].append(pk)
            run_broadcast(run, error=run.error)
            log.warning("training run %s: %s", pk, why)
    return result


def _republish_lost_messages(*, now: datetime, skip: set[int]) -> list[int]:
    """Queued runs older than the grace period whose message is neither waiting in the training queue nor held by a
    worker (Redis flushed, or restarted without persistence) get a new message. A message delivered more than the
    grace period ago whose run is still queued was taken by a worker that died before claiming it (a live one claims
    the run as its task starts): it goes back to the queue, out of the unacknowledged hash, instead of waiting there
    for the visibility timeout (hours). Nothing is judged when the broker cannot be read. A message that names the
    run under an older task id still counts: it will claim the run, and a second delivery of a claimed run does
    nothing (training_run_claim)."""
    grace = timedelta(seconds=settings.TRAINING_QUEUED_GRACE_S)
    queued = set(
        TrainingRun.objects.filter(status=Status.QUEUED, queued_at__lt=now - grace).values_list("pk", flat=True)
    )
    queued -= skip
    if not queued:
        return []
    from vectormlops.celery import app

    queue = app.amqp.router.route({}, TRAINING_TASK)["queue"].name
    messages = broker_messages([queue])
    if messages is None:
        return []
    held, stale = stale_deliveries(messages, TRAINING_TASK, older_than=(now - grace).timestamp())
    republished = []
    for pk in sorted(queued - held):
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().filter(pk=pk, status=Status.QUEUED).first()
            if run is None:
                continue
            if any([broker_message_restore(tag) for tag in stale.get(pk, [])]):
                why = "its message was taken by a worker that stopped before starting it; put back in the queue"
            else:
                why = "its queue message was lost (Redis flushed or restarted); queued again"
                training_run_enqueue(run)
            run.log_tail = tail_of(run.log_tail + f"\n[vectormlops] {why}\n")
            run.save(update_fields=["log_tail"])
        republished.append(pk)
        log.warning("training run %s: %s", pk, why)
    return republished


def run_folder(run_id: int) -> Path:
    """Where a run's attempt works: the version laid out, ultralytics' output, the exported files."""
    return Path(settings.TRAINING_DIR) / f"run-{run_id}"


def training_folders_prune() -> list[int]:
    """Remove the working folders of runs that have ended (or no longer exist): a killed worker's attempt leaves its
    folder behind. The model registry keeps its own copies in storage; active runs keep theirs."""
    root = Path(settings.TRAINING_DIR)
    if not root.is_dir():
        return []
    folders = {
        int(match[1]): path
        for path in root.iterdir()
        if path.is_dir() and (match := re.fullmatch(r"run-(\d+)", path.name))
    }
    active = set(
        TrainingRun.objects.filter(pk__in=folders, status__in=TrainingRun.ACTIVE_STATUSES).values_list("pk", flat=True)
    )
    removed = sorted(set(folders) - active)
    for pk in removed:
        shutil.rmtree(folders[pk], ignore_errors=True)
    return removed
