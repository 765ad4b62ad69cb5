"""python manage.py import_dataset <slug> <path> [--approve] [--keep-split]: import a YOLO/COCO zip or folder."""

import json

from django.core.management.base import BaseCommand, CommandError

from apps.datasets.selectors import dataset_by_slug
from apps.datasets.services import dataset_import
from vectormlops.errors import DomainError


class Command(BaseCommand):
    help = "Import a zip or folder (YOLO, Roboflow's YOLO export, or COCO JSON) into a dataset; prints the report."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("path")
        parser.add_argument("--approve", action="store_true", help="Imported boxes arrive approved, not submitted.")
        parser.add_argument("--keep-split", action="store_true", help="Pin each image to its split in the source.")

    def handle(self, *args, **options):
        try:
            dataset = dataset_by_slug(options["slug"])
            report = dataset_import(
                dataset=dataset, path=options["path"], approve=options["approve"], keep_split=options["keep_split"]
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps(report, indent=2, default=str))
