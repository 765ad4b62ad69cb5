"""Reads of the training app."""

from datetime import datetime, timedelta

from django.utils import timezone

from apps.datasets.models import Dataset, Image
from apps.training import hooks
from apps.training.models import RetrainPolicy, TrainingRun


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


# The settings of a run that can differ between two runs of one dataset, as (label, how to read it).
RUN_SETTINGS = (
    ("dataset version", lambda run: f"v{run.dataset_version.number}" if run.dataset_version else ""),
    ("base", lambda run: run.base + (f" (model v{run.base_model.number})" if run.base_model else "")),
    ("epochs", lambda run: run.epochs),
    ("imgsz", lambda run: run.imgsz),
    ("batch", lambda run: run.batch),
    ("patience", lambda run: run.patience),
    ("seed", lambda run: run.seed),
    ("device", lambda run: run.device),
    ("trigger", lambda run: run.trigger),
    ("code", lambda run: run.code_revision),
    ("ultralytics", lambda run: (run.package_versions or {}).get("ultralytics", "")),
    ("torch", lambda run: (run.package_versions or {}).get("torch", "")),
)


def runs_for_comparison(run_ids: list[int]) -> list[TrainingRun]:
    """The runs asked for, oldest first, with their dataset, version, base model and epochs loaded."""
    runs = (
        TrainingRun.objects.filter(pk__in=run_ids)
        .select_related("dataset", "dataset_version", "base_model", "model_version")
        .prefetch_related("epoch_metrics")
    )
    return sorted(runs, key=lambda run: run.pk)


EPOCH_FIELDS = ("epoch", "losses", "precision", "recall", "map50", "map50_95", "seconds")


def run_curves(runs: list[TrainingRun]) -> list[dict]:
    """Each run's per-epoch metrics for the overlaid charts (training/curves.js): ``{"id", "label", "epochs"}``."""
    curves = []
    for run in runs:
        model = getattr(run, "model_version", None)  # None when the run registered no model
        label = f"run #{run.pk}" + (f" (model v{model.number})" if model else "")
        epochs = [{field: getattr(metric, field) for field in EPOCH_FIELDS} for metric in run.epoch_metrics.all()]
        curves.append({"id": run.pk, "label": label, "epochs": epochs})
    return curves


def run_settings_table(runs: list[TrainingRun]) -> list[dict]:
    """Every setting as ``{"name", "values", "differs"}``, one value per run; the ones that differ come first."""
    rows = []
    for name, read in RUN_SETTINGS:
        values = [read(run) for run in runs]
        rows.append({"name": name, "values": values, "differs": len({str(v) for v in values}) > 1})
    return sorted(rows, key=lambda row: not row["differs"])


def run_time_left_s(run: TrainingRun, epoch_seconds: list[float]) -> float | None:
    """Seconds the run still needs at the mean pace of its finished epochs (None before the first epoch or once the
    run is over). Early stopping (patience) can end it sooner."""
    done = [s for s in epoch_seconds if s]
    if not run.is_active or not done:
        return None
    return max(run.epochs - len(epoch_seconds), 0) * sum(done) / len(done)


# Model configs offered to start from scratch (ultralytics ships them; trained from random weights, no download).
MODEL_CONFIGS = ("yolov8n.yaml", "yolov8s.yaml", "yolov8m.yaml", "yolo11n.yaml", "yolo11s.yaml", "yolo11m.yaml")


def base_choices(dataset=None) -> list[dict]:
    """What a run can start from, as ``{"value", "label", "kind"}``: the production model of ``dataset`` (when one is
    live and has .pt weights), the registered base models that loaded safely, and the model configs."""
    from apps.training.models import BaseModel, ModelArtifact
    from apps.training.services.start import _ultralytics_config_exists

    choices = []
    production = hooks.production_model_for(dataset) if dataset is not None else None
    if production is not None and production.artifacts.filter(format=ModelArtifact.Format.PT).exists():
        choices.append(
            {
                "value": TrainingRun.PRODUCTION_BASE,
                "label": f"Production model v{production.number} (fine-tune)",
                "kind": "production",
            }
        )
    for base in BaseModel.objects.filter(status=BaseModel.Status.READY).order_by("name"):
        classes = len(base.details.get("classes", []))
        choices.append({"value": base.base_value, "label": f"{base.name} ({classes} classes)", "kind": "registered"})
    for config in MODEL_CONFIGS:
        if _ultralytics_config_exists(config):
            choices.append({"value": config, "label": f"{config} (from scratch)", "kind": "config"})
    return choices


def retraining_overview(*, now: datetime | None = None) -> dict:
    """The retraining page: how often beat looks (its PeriodicTask), and every dataset with its policy (or none) and
    why it is due now."""
    from django_celery_beat.models import PeriodicTask

    from apps.training.services.schedule import RETRAIN_TASK_NAME

    task = PeriodicTask.objects.select_related("interval").filter(name=RETRAIN_TASK_NAME).first()
    policies = {p.dataset_id: p for p in RetrainPolicy.objects.select_related("dataset")}
    rows = []
    for dataset in Dataset.objects.order_by("slug"):
        policy = policies.get(dataset.id)
        rows.append(
            {
                "dataset": dataset,
                "policy": policy,
                "due": retrain_reasons(policy=policy, now=now) if policy and policy.enabled else [],
            }
        )
    return {"task": task, "rows": rows}
