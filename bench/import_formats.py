"""Import a YOLO zip and a COCO zip of N generated images (640x360, one to three boxes each) and compare with a bare
copy of the same files in the same run (unzip + copy every image into a folder: the floor any importer pays).

    python bench/import_formats.py -n 2000      # a throw-away SQLite database and media folder in a temp dir

Prints images/s for each import, for the bare copy and for unzipping + reading the layout alone (no database,
no image decoding), their ratio, and nproc.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from common import django_on_scratch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_zips(work: Path, n: int, seed: int) -> tuple[Path, Path]:
    from vectorsim.scenes import scene_jpeg

    rng = random.Random(seed)
    yolo, coco = work / "yolo.zip", work / "coco.zip"
    doc = {"categories": [{"id": 1, "name": "vector"}], "images": [], "annotations": []}
    with zipfile.ZipFile(yolo, "w") as y, zipfile.ZipFile(coco, "w") as c:
        y.writestr("data.yaml", "names: [vector]\n")
        for i in range(n):
            data, boxes = scene_jpeg(rng, 640, 360)
            split = "val" if i % 5 == 0 else "train"
            y.writestr(f"images/{split}/{i:05d}.jpg", data)
            lines = [
                f"0 {(x + w / 2) / 640:.6f} {(yy + h / 2) / 360:.6f} {w / 640:.6f} {h / 360:.6f}"
                for x, yy, w, h in boxes
            ]
            y.writestr(f"labels/{split}/{i:05d}.txt", "\n".join(lines) + "\n")
            c.writestr(f"images/{i:05d}.jpg", data)
            doc["images"].append({"id": i, "file_name": f"{i:05d}.jpg", "width": 640, "height": 360})
            for box in boxes:
                doc["annotations"].append(
                    {
                        "id": len(doc["annotations"]) + 1,
                        "image_id": i,
                        "category_id": 1,
                        "bbox": list(box),
                        "iscrowd": 0,
                    }
                )
        c.writestr("annotations/instances_train.json", json.dumps(doc))
    return yolo, coco


def bare_copy(archive: Path, dest: Path) -> float:
    started = time.perf_counter()
    scratch = dest / "unzipped"
    with zipfile.ZipFile(archive) as z:
        z.extractall(scratch)
    for path in scratch.rglob("*.jpg"):
        shutil.copyfile(path, dest / path.name)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="images in each zip")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with django_on_scratch("vm-bench-import-") as var:
        from apps.datasets import formats
        from apps.datasets.models import Annotation
        from apps.datasets.services import dataset_create, dataset_import

        work = Path(var) / "work"
        work.mkdir()
        yolo, coco = write_zips(work, args.n, args.seed)
        print(f"nproc {os.cpu_count()}, {args.n} images, yolo zip {yolo.stat().st_size / 1e6:.1f} MB")
        for name, archive in (("yolo", yolo), ("coco", coco)):
            copy_dir = work / f"copy-{name}"
            copy_dir.mkdir()
            copy_s = bare_copy(archive, copy_dir)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=work) as scratch:
                formats.safe_extract(archive, Path(scratch), max_bytes=1 << 34)
                source = formats.detect(Path(scratch))
            parse_s = time.perf_counter() - started
            assert len(source.items) == args.n
            dataset = dataset_create(slug=f"bench-{name}", name=name, classes=["vector"])
            started = time.perf_counter()
            report = dataset_import(dataset=dataset, path=archive)
            import_s = time.perf_counter() - started
            assert report["imported"] == args.n, report
            boxes = sum(
                len(b) for b in Annotation.objects.filter(image__dataset=dataset).values_list("boxes", flat=True)
            )
            print(
                f"{name}: import {args.n / import_s:.1f} images/s ({import_s:.1f} s, {boxes} boxes); "
                f"bare copy {args.n / copy_s:.0f} images/s ({copy_s:.2f} s); "
                f"import takes {import_s / copy_s:.0f}x the copy's time; "
                f"unzip + detect + parse alone {args.n / parse_s:.0f} images/s ({parse_s:.2f} s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
