"""Registering a trained model: its artifacts stored with their sha256, numbered per dataset, announced."""

import logging
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.datasets.storage import sha256_of_file
from apps.training.models import ModelArtifact, ModelVersion, TrainingRun
from apps.training.services.lifecycle import run_broadcast, tail_of
from apps.training.signals import model_trained
from vectormlops.errors import Conflict
from vectormlops.events import broadcast

log = logging.getLogger(__name__)

Status = TrainingRun.Status


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
            sha256, size = sha256_of_file(path)
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
            locked.log_tail = tail_of(log_tail)
        locked.save()
    except BaseException:
        for name in stored:
            try:
                default_storage.delete(name)
            except Exception:  # noqa: BLE001 - best effort; the row is rolled back either way
                log.warning("could not delete %s", name, exc_info=True)
        raise
    run.status = locked.status
    run_broadcast(locked, model_id=model.pk, model_number=model.number)
    broadcast(f"dataset.{dataset.slug}", "model_trained", {"model_id": model.pk, "number": model.number})
    # robust: a failing receiver is logged and must not turn a committed success into a reported failure.
    transaction.on_commit(lambda: model_trained.send(sender=ModelVersion, model_version=model, run=locked), robust=True)
    return model
