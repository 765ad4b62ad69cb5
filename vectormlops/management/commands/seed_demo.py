"""python manage.py seed_demo [--if-empty] [--count 60] [--unlabeled 12]: a demo dataset of generated robot scenes
with their true boxes (approved), plus a few unlabeled ones, so a fresh install has something to label, freeze and
train on."""

import io
import random

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.datasets.models import Dataset, Image
from apps.datasets.services import annotation_set, dataset_create, image_ingest
from vectorsim.scenes import CLASS_NAMES, scene_jpeg

SLUG = "demo-synthetic"
NAME = "Synthetic demo (generated robots)"
WIDTH, HEIGHT = 320, 180


class Command(BaseCommand):
    help = "Create the demo dataset 'demo-synthetic' of generated Vector scenes with approved boxes."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when any dataset exists.")
        parser.add_argument("--count", type=int, default=60, help="Number of generated images (default 60).")
        parser.add_argument(
            "--unlabeled", type=int, default=12, help="Extra generated images left unlabeled for the labeling queue."
        )
        parser.add_argument("--seed", type=int, default=20261127, help="Random seed (same seed, same images).")

    def handle(self, *args, **options):
        if options["if_empty"] and Dataset.objects.exists():
            self.stdout.write("Datasets exist already; nothing seeded.")
            return
        dataset = Dataset.objects.filter(slug=SLUG).first() or dataset_create(
            slug=SLUG, name=NAME, classes=list(CLASS_NAMES), review_required=False
        )
        rng = random.Random(options["seed"])
        created_count = 0
        for number in range(options["count"] + options["unlabeled"]):
            labeled = number < options["count"]
            data, boxes = scene_jpeg(rng, WIDTH, HEIGHT)
            with transaction.atomic():
                image, created = image_ingest(
                    dataset=dataset, fileobj=io.BytesIO(data), source=Image.Source.UPLOAD, meta={"synthetic": True}
                )
                if created and labeled:
                    annotation_set(
                        image=image,
                        boxes=[{"class_id": 0, "box": box} for box in boxes],
                        status=Image.Status.APPROVED,
                    )
                created_count += created
        self.stdout.write(f"Seeded {created_count} images into {SLUG} ({dataset.images.count()} in all).")
