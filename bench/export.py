"""Freeze and materialise a version of N generated images (640x360, approved boxes); print the seconds of each step.

    python bench/export.py -n 2000        # a throw-away SQLite database and media folder in a temp dir

Also times the YOLO zip export. The images are ingested first through image_ingest (not timed as export).
"""

import argparse
import io
import os
import random
import sys
import time
from pathlib import Path

from common import django_on_scratch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="images in the version")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-zip", action="store_true", help="skip the zip export timing")
    args = parser.parse_args()

    with django_on_scratch("vm-bench-export-") as var:
        from apps.datasets.models import Image
        from apps.datasets.services import (
            annotation_set,
            dataset_create,
            image_ingest,
            version_export_zip,
            version_freeze,
            version_materialize,
        )
        from vectorsim.scenes import scene_jpeg

        dataset = dataset_create(slug="bench", name="Benchmark", classes=["vector"])
        rng = random.Random(args.seed)
        started = time.perf_counter()
        for _ in range(args.n):
            data, boxes = scene_jpeg(rng, 640, 360)
            image, created = image_ingest(dataset=dataset, fileobj=io.BytesIO(data), source=Image.Source.CAMERA)
            if created:
                annotation_set(image=image, boxes=[{"class_id": 0, "box": b} for b in boxes], status="approved")
        ingest_s = time.perf_counter() - started
        print(f"setup: ingested and approved {args.n} images in {ingest_s:.1f}s (in-process, not HTTP)", flush=True)

        started = time.perf_counter()
        version = version_freeze(dataset=dataset)
        freeze_s = time.perf_counter() - started
        started = time.perf_counter()
        data_yaml = version_materialize(version=version, dest_dir=Path(var) / "materialized")
        materialize_s = time.perf_counter() - started
        sample = next((Path(var) / "materialized" / "images" / "train").iterdir())
        print(f"images in version: {version.image_count} ({version.counts['images']})")
        print(f"freeze_s: {freeze_s:.2f}")
        print(f"materialize_s: {materialize_s:.2f} (links: st_nlink={sample.stat().st_nlink}; {data_yaml})")
        if not args.no_zip:
            started = time.perf_counter()
            path = version_export_zip(version=version, fmt="yolo")
            zip_s = time.perf_counter() - started
            print(f"export_yolo_zip_s: {zip_s:.2f} ({path.stat().st_size / 1e6:.1f} MB)")
            path.unlink()
        print(f"nproc: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
