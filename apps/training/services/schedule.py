"""The retraining schedule (Celery beat): start a run for every dataset that is due; set the policies and how often
beat looks."""

import logging
from datetime import datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

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


RETRAIN_TASK = "apps.training.tasks.retrain_schedule_task"
RETRAIN_TASK_NAME = "training: retrain due datasets"  # created by migration 0003


@transaction.atomic
def retrain_policy_set(
    *,
    dataset,
    enabled: bool,
    min_new_approved_images: int,
    max_model_age_days: int,
    epochs: int,
    imgsz: int,
    batch: int,
    base: str = "",
) -> RetrainPolicy:
    """Create or change the dataset's retrain policy (what makes it due, and the run's hyperparameters)."""
    policy = RetrainPolicy.objects.select_for_update().filter(dataset=dataset).first() or RetrainPolicy(dataset=dataset)
    policy.enabled, policy.base = enabled, (base or "").strip()
    policy.min_new_approved_images, policy.max_model_age_days = min_new_approved_images, max_model_age_days
    policy.epochs, policy.imgsz, policy.batch = epochs, imgsz, batch
    try:
        policy.full_clean()
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "The retrain policy is not valid.", code="invalid_retrain_policy", details=exc.message_dict
        ) from exc
    policy.save()
    return policy


@transaction.atomic
def retrain_schedule_set(*, every_minutes: int, enabled: bool) -> PeriodicTask:
    """How often Celery beat (DatabaseScheduler) looks for datasets due for retraining, and whether it does at all."""
    if not 1 <= every_minutes <= 7 * 24 * 60:
        raise ValidationFailed("Check between every minute and once a week.", code="invalid_schedule")
    interval = IntervalSchedule.objects.filter(every=every_minutes, period=IntervalSchedule.MINUTES).order_by(
        "id"
    ).first() or IntervalSchedule.objects.create(every=every_minutes, period=IntervalSchedule.MINUTES)
    task, _ = PeriodicTask.objects.select_for_update().get_or_create(
        name=RETRAIN_TASK_NAME, defaults={"task": RETRAIN_TASK, "interval": interval}
    )
    task.interval, task.crontab, task.enabled = interval, None, enabled
    task.save()  # django-celery-beat marks its schedule changed, so a running beat reloads it
    return task
