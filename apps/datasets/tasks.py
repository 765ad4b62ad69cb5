"""Celery tasks of the datasets app: thin, take ids, call a service."""

from celery import shared_task

from apps.datasets.models import DatasetVersion, ImportJob
from apps.datasets.services import import_job_run, version_export_store


@shared_task(name="apps.datasets.tasks.dataset_import_task", acks_late=True)
def dataset_import_task(job_id: int) -> str:
    """Run one queued import job (its row records progress, the report or the error)."""
    job = ImportJob.objects.select_related("dataset", "created_by").filter(pk=job_id).first()
    if job is None or job.status in (ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED):
        return "skipped"  # deleted, or a redelivery of a job that already finished
    # A job left "running" by a killed worker runs again once its heartbeat is silent (import_job_run claims it):
    # importing is idempotent. A second delivery of a job another process runs does nothing.
    ran = import_job_run(job=job)
    return ran.status if ran else "skipped"


@shared_task(name="apps.datasets.tasks.version_export_task", acks_late=True)
def version_export_task(version_id: int, fmt: str) -> str:
    """Zip a big frozen version into storage (the export page waits for it)."""
    version = DatasetVersion.objects.select_related("dataset").get(pk=version_id)
    return version_export_store(version=version, fmt=fmt)
