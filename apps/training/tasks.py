"""Thin Celery tasks: load ids, call the runner or a service. ``training_run_task`` goes to the ``training`` queue;
the schedule and sweeper tasks are routed to ``default`` (settings.CELERY_TASK_ROUTES) so they never wait behind a
training."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from apps.training import services

log = logging.getLogger(__name__)


@worker_ready.connect
def preload_training_libraries(sender=None, **kwargs):
    """A worker serving the training queue imports ultralytics, torch and the ONNX exporter once at start-up (several
    seconds on a small machine) instead of inside the first run; other workers never load them."""
    try:
        queues = {queue.name for queue in sender.task_consumer.queues}
    except AttributeError:
        return
    if "training" not in queues:
        return
    from apps.training import yolo

    yolo.preload()


@shared_task(name="apps.training.tasks.training_run_task", bind=True, acks_late=True, reject_on_worker_lost=True)
def training_run_task(self, run_id: int) -> str:
    """Train one run. Late acknowledgement plus the run's heartbeat: a killed worker's run is found by the sweeper."""
    from apps.training.yolo import execute_run  # imports ultralytics lazily: only training workers pay for it

    return execute_run(run_id=run_id, task_id=self.request.id or "")


@shared_task(name="apps.training.tasks.retrain_schedule_task")
def retrain_schedule_task() -> list[int]:
    """Celery beat: start a run for every dataset whose retraining policy says it is due."""
    return [run.pk for run in services.retrain_due_datasets()]


@shared_task(name="apps.training.tasks.training_runs_sweep_task")
def training_runs_sweep_task() -> dict:
    """Celery beat: nothing stays active without an owner. Runs whose worker stopped beating are re-queued or
    failed, lost queue messages published again, ended runs' folders removed; import jobs likewise. (Exports have
    no job row: the export page asks again and a lost export is built again.)"""
    from apps.datasets.services.imports import import_jobs_sweep

    return {**services.training_runs_sweep(), "imports": import_jobs_sweep()}


@shared_task(name="apps.training.tasks.base_model_check_task", acks_late=True)
def base_model_check_task(base_model_id: int) -> str:
    """Load a registered base model safely on a training worker (torch lives there) and mark it ready or rejected."""
    return services.base_model_check(base_model_id=base_model_id).status
