"""Celery tasks of the datasets app: thin, take ids, call a service."""

from celery import shared_task

from apps.datasets.models import ImportJob
from apps.datasets.services import import_job_run


@shared_task(name="apps.datasets.tasks.dataset_import_task", acks_late=True)
def dataset_import_task(job_id: int) -> str:
    """Run one queued import job (its row records progress, the report or the error)."""
    job = ImportJob.objects.select_related("dataset", "created_by").filter(pk=job_id).first()
    if job is None or job.status != ImportJob.Status.QUEUED:
        return "skipped"  # deleted, or a redelivery of a job that already ran
    return import_job_run(job=job).status
