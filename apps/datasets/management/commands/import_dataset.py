"""python manage.py import_dataset <slug> <path> [--approve] [--keep-split]: import a zip or folder in any layout
the importer reads (YOLO, Roboflow, Darknet/CVAT YOLO 1.1, COCO, Pascal VOC, Label Studio, CVAT XML); prints the
report. python manage.py import_dataset <slug> --rollback <job id>: undo an import."""

import json

from django.core.management.base import BaseCommand, CommandError

from apps.datasets.models import ImportJob
from apps.datasets.selectors import dataset_by_slug
from apps.datasets.serializers import ImportJobOutput
from apps.datasets.services import import_job_run_path, import_rollback
from vectormlops.errors import DomainError


class Command(BaseCommand):
    help = "Import a zip or folder into a dataset and print the report, or roll an earlier import back."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("path", nargs="?")
        parser.add_argument("--approve", action="store_true", help="Imported boxes arrive approved, not submitted.")
        parser.add_argument("--keep-split", action="store_true", help="Pin each image to its split in the source.")
        parser.add_argument("--rollback", type=int, metavar="JOB", help="Undo the import with this job id.")

    def handle(self, *args, **options):
        try:
            dataset = dataset_by_slug(options["slug"])
            if options["rollback"] is not None:
                job = ImportJob.objects.filter(pk=options["rollback"], dataset=dataset).first()
                if job is None:
                    raise CommandError(f"unknown_import: no import {options['rollback']} in {dataset.slug}")
                job = import_rollback(job=job)
                self.stdout.write(json.dumps(job.report["rollback"], indent=2, default=str))
                return
            if not options["path"]:
                raise CommandError("Name the zip or folder to import (or --rollback JOB).")
            job = import_job_run_path(
                dataset=dataset, path=options["path"], approve=options["approve"], keep_split=options["keep_split"]
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        error = job.report.get("error")
        if error and job.status == ImportJob.Status.FAILED and "format" not in job.report:
            raise CommandError(f"{error['code']}: {error['message']}")
        # The report as the API shows it (ImportJobOutput: without the internal undo list), one shape in one place.
        report = {"job": job.pk, "job_status": job.status, **ImportJobOutput(job).data["report"]}
        self.stdout.write(json.dumps(report, indent=2, default=str))
