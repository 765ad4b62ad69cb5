"""Starting a training run: the base it fine-tunes, checked hyperparameters, the frozen version, the queue."""

import importlib.util
import re
from pathlib import Path

from django.db import transaction

from apps.datasets.models import Dataset, DatasetVersion
from apps.datasets.services import version_freeze
from apps.training import hooks
from apps.training.models import BaseModel, ModelArtifact, ModelVersion, TrainingRun
from vectormlops.errors import Conflict, ValidationFailed
from vectormlops.events import broadcast

DEFAULT_BASE = "yolov8n.yaml"
PRODUCTION = TrainingRun.PRODUCTION_BASE


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
    """A base is 'production', an ultralytics model config (.yaml) or a local weights file (.pt) (a registered base
    model, registered:<id>, is checked by ``_registered_base``). Never a download."""
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


def _clean_hyperparameters(*, epochs, imgsz, batch, patience) -> tuple[int, int, int, int]:
    epochs = _positive("epochs", epochs, 1, 10_000)
    imgsz = _positive("imgsz", imgsz, 32, 4096)
    batch = _positive("batch", batch, 1, 1024)
    patience = _positive("patience", patience, 1, 10_000)
    if imgsz % 32:
        raise ValidationFailed(
            "imgsz must be a multiple of 32.", code="invalid_hyperparameter", details={"imgsz": imgsz}
        )
    return epochs, imgsz, batch, patience


def _registered_base(base: str) -> BaseModel:
    """The ready base model that ``registered:<id>`` names."""
    key = base.removeprefix(BaseModel.PREFIX)
    registered = BaseModel.objects.filter(pk=int(key)).first() if key.isdigit() else None
    if registered is None:
        raise ValidationFailed(f"No registered base model {key!r}.", code="invalid_base", details={"base": base})
    if registered.status != BaseModel.Status.READY:
        raise ValidationFailed(
            f"Base model {registered.name!r} is {registered.status}, not ready to train from.",
            code="base_model_not_ready",
            details={"base": base, "status": registered.status, "error": registered.error},
        )
    return registered


def _resolve_base(*, dataset: Dataset, base: str | None) -> tuple[str, ModelVersion | None]:
    """The checked base and, when it is the production model, that model (which must have .pt weights).
    No base given: fine-tune production when there is one, else start from the default config."""
    base_model = None
    if base is None or str(base).strip() == "":
        base_model = hooks.production_model_for(dataset)
        base = PRODUCTION if base_model is not None else DEFAULT_BASE
    if str(base).startswith(BaseModel.PREFIX):
        return str(base), None
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
    return base, base_model


def _version_to_train(*, dataset: Dataset, version: DatasetVersion | None, user) -> DatasetVersion:
    """The given version of this dataset, or a new one frozen now; it must hold training images."""
    if version is None:
        version = version_freeze(dataset=dataset, user=user, note="frozen for training")
    elif version.dataset_id != dataset.pk:
        raise ValidationFailed("That version belongs to another dataset.", code="version_mismatch")
    if not (version.counts or {}).get("images", {}).get("train"):
        raise ValidationFailed(
            f"Version {version.number} has no training images.",
            code="version_too_small",
            details={"version": version.pk, "counts": version.counts},
        )
    return version


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
    epochs, imgsz, batch, patience = _clean_hyperparameters(epochs=epochs, imgsz=imgsz, batch=batch, patience=patience)
    device = (device or "auto").strip()
    if trigger not in TrainingRun.Trigger.values:
        raise ValidationFailed(f"Unknown trigger {trigger!r}.", code="invalid_trigger")
    base, base_model = _resolve_base(dataset=dataset, base=base)
    registered_base = _registered_base(base) if base.startswith(BaseModel.PREFIX) else None
    version = _version_to_train(dataset=dataset, version=version, user=user)

    run = TrainingRun(
        dataset=dataset,
        dataset_version=version,
        base=base,
        base_model=base_model,
        registered_base=registered_base,
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
    training_run_enqueue(run)
    broadcast(f"dataset.{dataset.slug}", "training_run", {"id": run.pk, "status": run.status})
    return run


def training_run_enqueue(run: TrainingRun) -> None:
    """Queue the run's task after commit; the task id is stored so the admin can see which message runs it."""
    from celery import uuid

    task_id = uuid()
    TrainingRun.objects.filter(pk=run.pk).update(celery_task_id=task_id)
    run.celery_task_id = task_id

    def send():
        from apps.training.tasks import training_run_task

        training_run_task.apply_async(args=[run.pk], task_id=task_id)

    transaction.on_commit(send)
