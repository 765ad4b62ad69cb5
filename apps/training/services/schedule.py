"""The retraining schedule (Celery beat): start a run for every dataset that is due."""

import logging
from datetime import datetime

from apps.training.models import RetrainPolicy, TrainingRun
from apps.training.selectors import retrain_reasons
from apps.training.services.start import training_run_start
from vectormlops.errors import Conflict, ValidationFailed

log = logging.getLogger(__name__)


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
