"""Monitoring's Celery tasks (scheduled by django-celery-beat, see migration 0002): thin wrappers over services."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.deployments.models import Deployment
from apps.monitoring import services
from apps.monitoring.services.notifications import DeliveryFailed

log = logging.getLogger(__name__)


def _datasets_with_live(channel: str, dataset_id: int | None):
    datasets = Dataset.objects.filter(deployments__channel=channel, deployments__is_live=True).distinct()
    return datasets.filter(id=dataset_id) if dataset_id is not None else datasets


@shared_task(name="apps.monitoring.tasks.telemetry_aggregate_task", ignore_result=True)
def telemetry_aggregate_task() -> dict:
    """Every minute: fold new raw telemetry and feedback into the hourly buckets."""
    return services.telemetry_aggregate()


@shared_task(name="apps.monitoring.tasks.telemetry_prune_task", ignore_result=True)
def telemetry_prune_task() -> dict:
    """Daily: drop aggregated raw telemetry older than MONITORING_RAW_RETENTION_DAYS (hourly buckets stay), and
    drift reports older than MONITORING_DRIFT_REPORT_RETENTION_DAYS."""
    now = timezone.now()
    raw_days, report_days = settings.MONITORING_RAW_RETENTION_DAYS, settings.MONITORING_DRIFT_REPORT_RETENTION_DAYS
    return {
        "telemetry": services.telemetry_prune(older_than=now - timedelta(days=raw_days)),
        "drift_reports": services.drift_reports_prune(older_than=now - timedelta(days=report_days)),
    }


@shared_task(name="apps.monitoring.tasks.drift_compute_task", ignore_result=True)
def drift_compute_task(dataset_id: int | None = None) -> dict:
    """Hourly: drift of every dataset with a production deployment (or of one dataset)."""
    done = {}
    for dataset in _datasets_with_live(Deployment.Channel.PRODUCTION, dataset_id):
        try:
            reports = services.drift_compute(dataset=dataset)
        except Exception:  # noqa: BLE001 - one broken dataset must not stop the others
            log.exception("drift computation failed for %s", dataset.slug)
            continue
        done[dataset.slug] = [r.id for r in reports]
    return done


@shared_task(name="apps.monitoring.tasks.canary_guard_task", ignore_result=True)
def canary_guard_task(dataset_id: int | None = None) -> dict:
    """Every minute: judge each live canary against production and stop a bad one."""
    done = {}
    for dataset in _datasets_with_live(Deployment.Channel.CANARY, dataset_id):
        try:
            done[dataset.slug] = services.canary_guard_check(dataset=dataset)["status"]
        except Exception:  # noqa: BLE001 - one broken dataset must not stop the others
            log.exception("canary guard failed for %s", dataset.slug)
    return done


@shared_task(name="apps.monitoring.tasks.performance_check_task", ignore_result=True)
def performance_check_task(dataset_id: int | None = None) -> dict:
    """Every minute: judge each live production model against its own first days (performance alerts)."""
    done = {}
    for dataset in _datasets_with_live(Deployment.Channel.PRODUCTION, dataset_id):
        try:
            done[dataset.slug] = services.performance_check(dataset=dataset)
        except Exception:  # noqa: BLE001 - one broken dataset must not stop the others
            log.exception("performance check failed for %s", dataset.slug)
    return done


@shared_task(
    bind=True,
    name="apps.monitoring.tasks.notification_deliver_task",
    ignore_result=True,
    max_retries=None,  # counted against NOTIFICATION_ATTEMPTS below, so the last attempt can mark the row failed
)
def notification_deliver_task(self, notification_id: int) -> None:
    """Deliver one notification; a failure is retried with exponential backoff, up to NOTIFICATION_ATTEMPTS."""
    final = self.request.retries + 1 >= settings.NOTIFICATION_ATTEMPTS
    try:
        services.notification_deliver(notification_id=notification_id, final_attempt=final)
    except DeliveryFailed as exc:
        if final:
            return
        raise self.retry(exc=exc, countdown=settings.NOTIFICATION_RETRY_DELAY_S * 2**self.request.retries) from exc
