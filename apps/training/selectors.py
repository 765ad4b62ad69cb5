"""Reads of the training app."""

from datetime import datetime, timedelta

from django.utils import timezone

from apps.datasets.models import Image
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
