"""Import jobs: queue an uploaded archive, run it (``import_archive``) while recording progress and the report, roll
an import back as a whole, and the sweeper that leaves no job queued or running without an owner."""

import hashlib
import logging
import os
import tempfile
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.datasets.models import Annotation, Dataset, Image, ImportJob, VersionItem
from apps.datasets.services.annotations import annotation_set
from apps.datasets.services.import_archive import dataset_import
from apps.datasets.services.ingest import image_files_forget as forget_files
from apps.datasets.storage import stored_file_on_disk
from vectormlops.broker import broker_message_restore, broker_messages, stale_deliveries
from vectormlops.errors import Conflict, DomainError, ValidationFailed
from vectormlops.events import broadcast
from vectormlops.heartbeat import Heartbeat

log = logging.getLogger(__name__)


def import_job_create(
    *, dataset: Dataset, fileobj, filename: str, user=None, approve: bool = False, keep_split: bool = False
) -> ImportJob:
    """Keep the uploaded archive in storage and queue its import; the job row is what the page watches."""
    if not filename.lower().endswith(".zip"):
        raise ValidationFailed("Upload a .zip archive.", code="not_a_zip", details={"file": filename})
    upload_name = default_storage.save(
        f"imports/{timezone.now():%Y%m%d}/{hashlib.sha256(os.urandom(16)).hexdigest()[:16]}.zip", fileobj
    )
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                dataset=dataset,
                upload_name=upload_name,
                original_name=os.path.basename(filename)[:255],
                approve=approve,
                keep_split=keep_split,
                created_by=user if getattr(user, "pk", None) else None,
            )
            from apps.datasets.tasks import dataset_import_task

            transaction.on_commit(lambda: dataset_import_task.delay(job.pk))
    except BaseException:
        default_storage.delete(upload_name)
        raise
    return job


def import_job_run(*, job: ImportJob) -> ImportJob | None:
    """Run a queued import: claim it, fetch the archive, import it, record progress and the report. None when
    there is nothing to do (a second delivery of a job another process runs, or one that has ended)."""
    job = _import_job_claim(job)
    if job is None:
        return None
    with tempfile.TemporaryDirectory(prefix="vm-importjob-") as scratch:
        try:
            return _import_job_execute(job, stored_file_on_disk(job.upload_name, scratch))
        finally:
            try:
                default_storage.delete(job.upload_name)
            except Exception:  # noqa: BLE001 - the archive is scratch
                log.warning("could not delete %s", job.upload_name, exc_info=True)


def import_job_run_path(
    *, dataset: Dataset, path, user=None, approve: bool = False, keep_split: bool = False
) -> ImportJob:
    """Import a local zip or folder now (``manage.py import_dataset``), recorded as a job so it can be rolled back."""
    job = ImportJob.objects.create(
        dataset=dataset,
        upload_name="",
        original_name=str(path)[-255:],
        approve=approve,
        keep_split=keep_split,
        created_by=user if getattr(user, "pk", None) else None,
    )
    return _import_job_execute(_import_job_claim(job), path)


def import_job_heartbeat(*, job_id: int) -> None:
    """The process running the job is alive (one UPDATE, no lock): the sweeper judges running jobs by this."""
    ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).update(heartbeat_at=timezone.now())


def _import_job_claim(job: ImportJob) -> ImportJob | None:
    """Take the job for this process (one conditional UPDATE, first thing when its task starts): a queued job, or a
    running one whose process went silent for the heartbeat timeout (a killed worker's redelivered message). None
    when another process holds it or it has ended: a second delivery of a claimed job does nothing."""
    now = timezone.now()
    silent = now - timedelta(seconds=settings.IMPORT_HEARTBEAT_TIMEOUT_S)
    takeable = Q(status=ImportJob.Status.QUEUED) | Q(
        Q(heartbeat_at__lt=silent) | Q(heartbeat_at__isnull=True, started_at__lt=silent),
        status=ImportJob.Status.RUNNING,
    )
    if not ImportJob.objects.filter(takeable, pk=job.pk).update(
        status=ImportJob.Status.RUNNING, started_at=now, heartbeat_at=now
    ):
        log.info("import job %s: nothing to do (taken by another process, or ended)", job.pk)
        return None
    job.refresh_from_db()
    return job


def _import_job_execute(job: ImportJob, path) -> ImportJob:
    topic = f"dataset.{job.dataset.slug}"

    def progress(done: int, total: int, partial: dict) -> None:
        # Inside the transaction of the files it counts: what a rollback needs is stored with the rows it describes.
        ImportJob.objects.filter(pk=job.pk).update(
            done=done, total=total, heartbeat_at=timezone.now(), report={**(job.report or {}), **partial}
        )
        data = {"job": job.pk, "done": done, "total": total}
        transaction.on_commit(lambda: broadcast(topic, "import_progress", data))

    # Progress beats with every file; the timer beats while one step takes long (unpacking, detecting, a big file).
    beat = Heartbeat(
        lambda: import_job_heartbeat(job_id=job.pk),
        interval_s=settings.IMPORT_HEARTBEAT_S,
        name=f"heartbeat-import-{job.pk}",
    )
    try:
        with beat:
            report = dataset_import(
                dataset=job.dataset,
                path=path,
                approve=job.approve,
                keep_split=job.keep_split,
                user=job.created_by,
                progress=progress,
                job_id=job.pk,
                resume=job.report,
            )
    except DomainError as exc:
        # What the batches already applied stays recorded (undo, classes added): it can be rolled back.
        applied = ImportJob.objects.filter(pk=job.pk).values_list("report", flat=True).first() or {}
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            error=exc.message,
            report={**applied, "error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            finished_at=timezone.now(),
        )
    except Exception as exc:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    else:
        stopped = report.get("error")  # stopped part way (time limit): what was imported stays, and can be undone
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED if stopped else ImportJob.Status.SUCCEEDED,
            error=stopped["message"] if stopped else "",
            report=report,
            finished_at=timezone.now(),
        )
    job.refresh_from_db()
    broadcast_status = {"job": job.pk, "status": job.status, "done": job.done, "total": job.total}
    broadcast(topic, "import_finished", broadcast_status)
    return job


@transaction.atomic
def import_rollback(*, job: ImportJob, user=None) -> ImportJob:
    """Undo an import as a whole: the images it added are removed and the boxes it gave images already there are
    cleared, except where someone has worked since (boxes saved, reviewed) or a frozen version holds the image;
    classes it added go too while no box uses them (only from the end of the list: boxes name classes by index).
    The report records what was removed and what was kept, and why."""
    job = ImportJob.objects.select_for_update().select_related("dataset").get(pk=job.pk)
    report = dict(job.report or {})
    if job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
        raise Conflict("The import is still running.", code="import_running", details={"job": job.pk})
    if report.get("rollback"):
        raise Conflict("This import was already rolled back.", code="already_rolled_back", details={"job": job.pk})
    dataset = Dataset.objects.select_for_update().get(pk=job.dataset_id)
    undo = report.get("undo") or []
    images = {
        i.pk: i for i in Image.objects.select_for_update().filter(dataset=dataset, pk__in=[u["image"] for u in undo])
    }
    versions = dict(Annotation.objects.filter(image_id__in=images).values_list("image_id", "version"))
    frozen = set(VersionItem.objects.filter(image_id__in=images).values_list("image_id", flat=True))
    removed, cleared, kept, files = [], [], [], []
    for entry in undo:
        image = images.get(entry["image"])
        if image is None:
            continue  # deleted since
        if image.pk in frozen:
            kept.append({"image": image.pk, "reason": "a frozen version holds it"})
        elif versions.get(image.pk, 0) != entry.get("version", 0) or image.status != entry.get("status"):
            kept.append({"image": image.pk, "reason": "labelled or reviewed since the import"})
        elif entry["created"]:
            files.append((image.sha256, image.storage_path, image.thumbnail_path))
            removed.append(image.pk)
            image.delete()
        else:
            annotation_set(image=image, boxes=[], user=user, status=entry["status_before"])
            cleared.append(image.pk)
    classes = list(dataset.classes)
    used = {
        b["class_id"]
        for boxes in Annotation.objects.filter(image__dataset=dataset).values_list("boxes", flat=True)
        for b in boxes or []
    }
    classes_removed = []
    while classes and classes[-1] in (report.get("classes_added") or []) and len(classes) - 1 not in used:
        classes_removed.insert(0, classes.pop())
    if classes_removed:
        dataset.classes = classes
        dataset.save(update_fields=["classes"])
    report["rollback"] = {
        "at": timezone.now().isoformat(),
        "by": getattr(user, "username", None),
        "images_removed": len(removed),
        "labels_cleared": len(cleared),
        "kept": kept,
        "classes_removed": classes_removed,
    }
    job.report = report
    job.save(update_fields=["report"])
    transaction.on_commit(lambda: [forget_files(sha, path, thumb) for sha, path, thumb in files])
    broadcast(f"dataset.{dataset.slug}", "import_rolled_back", {"job": job.pk, "images_removed": len(removed)})
    return job


# --- the sweeper: no import job stays queued or running without an owner ----------------------------------------

IMPORT_TASK = "apps.datasets.tasks.dataset_import_task"


def import_jobs_sweep(*, heartbeat_timeout_s: float | None = None, now: datetime | None = None) -> dict:
    """Nothing stays queued or running without an owner; the database is the truth. A running job whose process
    stopped beating its row (killed with -9, crashed, cut off) for ``IMPORT_HEARTBEAT_TIMEOUT_S`` is failed with the
    reason, keeping what it imported (recorded as it went: it can be rolled back); a live one beats while it works,
    however long one file takes, so it is never judged by whether its worker answers a broadcast. Queued jobs older
    than ``TRAINING_QUEUED_GRACE_S`` whose message the broker lost, or whose message a worker took and died before
    claiming the job, are published again (nothing is republished when the broker cannot be read).
    Returns {"republished": [ids], "failed": [ids]}."""
    now = now or timezone.now()
    timeout = heartbeat_timeout_s if heartbeat_timeout_s is not None else settings.IMPORT_HEARTBEAT_TIMEOUT_S
    failed = _fail_silent_jobs(cutoff=now - timedelta(seconds=timeout), now=now)
    return {"republished": _republish_lost_messages(now=now), "failed": failed}


def _fail_silent_jobs(*, cutoff: datetime, now: datetime) -> list[int]:
    # Rows from before heartbeats were recorded are judged by their start.
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    failed = []
    for job in (
        ImportJob.objects.filter(silent, status=ImportJob.Status.RUNNING).select_related("dataset").order_by("pk")
    ):
        last = job.heartbeat_at or job.started_at
        why = (
            "The worker running this import stopped (killed, crashed or cut off): no heartbeat for"
            f" {(now - last).total_seconds():.0f} s, after {job.done} of {job.total} files. What it imported stays"
            " and can be rolled back (it was recorded as it went); import the archive again for the rest (images"
            " already there are not added twice)."
        )
        # The same condition again in the UPDATE: a beat that arrived while we looked keeps the job alive.
        if not ImportJob.objects.filter(silent, pk=job.pk, status=ImportJob.Status.RUNNING).update(
            status=ImportJob.Status.FAILED, error=why, finished_at=now
        ):
            continue
        failed.append(job.pk)
        log.warning("import job %s: %s", job.pk, why)
        if job.upload_name:  # a job of ``manage.py import_dataset`` has no archive in storage
            try:
                default_storage.delete(job.upload_name)
            except Exception:  # noqa: BLE001 - the archive is scratch
                log.warning("could not delete %s", job.upload_name, exc_info=True)
        broadcast(
            f"dataset.{job.dataset.slug}",
            "import_finished",
            {"job": job.pk, "status": ImportJob.Status.FAILED, "done": job.done, "total": job.total},
        )
    return failed


def _republish_lost_messages(*, now: datetime) -> list[int]:
    """Queued jobs past the grace period whose message is neither waiting in the queue nor held unacknowledged by a
    worker (Redis flushed, or restarted without persistence) get a new message. One delivered more than the grace
    period ago to a worker that never claimed the job (it died first; a live one claims it as its task starts) goes
    back to the queue, out of the unacknowledged hash, instead of waiting there for the visibility timeout."""
    from apps.datasets.tasks import dataset_import_task
    from vectormlops.celery import app

    grace = timedelta(seconds=settings.TRAINING_QUEUED_GRACE_S)
    queued = set(
        ImportJob.objects.filter(status=ImportJob.Status.QUEUED, created_at__lt=now - grace)
        .exclude(upload_name="")
        .values_list("pk", flat=True)
    )
    if not queued:
        return []
    messages = broker_messages([app.amqp.router.route({}, IMPORT_TASK)["queue"].name])
    if messages is None:
        return []
    held, stale = stale_deliveries(messages, IMPORT_TASK, older_than=(now - grace).timestamp())
    republished = []
    for pk in sorted(queued - held):
        if not ImportJob.objects.filter(pk=pk, status=ImportJob.Status.QUEUED).exists():
            continue
        if any([broker_message_restore(tag) for tag in stale.get(pk, [])]):
            log.warning("import job %s: its message was taken by a worker that stopped first; put back", pk)
        else:
            dataset_import_task.delay(pk)
            log.warning("import job %s: queue message lost; published again", pk)
        republished.append(pk)
    return republished
