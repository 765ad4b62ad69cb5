"""Training workflows, by sub-domain: starting a run, its life after that (cancel, the runner's state changes,
the sweeper), model registration and the retraining schedule. Views, API views, admin actions and Celery tasks all
call these; the public services are listed here."""

from apps.training.selectors import retrain_reasons
from apps.training.services.bases import base_model_check, base_model_register
from apps.training.services.lifecycle import (
    epoch_metric_record,
    run_folder,
    training_folders_prune,
    training_run_advance,
    training_run_cancel,
    training_run_claim,
    training_run_finish,
    training_run_heartbeat,
    training_run_pulse,
    training_runs_sweep,
)
from apps.training.services.registry import model_version_register
from apps.training.services.schedule import retrain_due_datasets, retrain_policy_set, retrain_schedule_set
from apps.training.services.start import training_run_enqueue, training_run_start

__all__ = [
    "base_model_check",
    "base_model_register",
    "epoch_metric_record",
    "model_version_register",
    "retrain_due_datasets",
    "retrain_policy_set",
    "retrain_schedule_set",
    "retrain_reasons",
    "run_folder",
    "training_folders_prune",
    "training_run_advance",
    "training_run_cancel",
    "training_run_claim",
    "training_run_enqueue",
    "training_run_finish",
    "training_run_heartbeat",
    "training_run_pulse",
    "training_run_start",
    "training_runs_sweep",
]
