"""Foreign dataset layouts, in and out (no database). ``detect`` works out which layout a folder holds and reads it
into one model (``Source``); ``writers`` lays a frozen version out in each export format. Box formats other than
our pixel ``[x, y, w, h]`` (YOLO's normalised centre, corners, percent) appear only inside this package.

Why no datumaro (it reads and writes all of these): version 1.13.12 installs 563 MB with its 26 dependencies
(pyarrow, pandas, opencv-python-headless, shapely, pycocotools, lxml), pins pillow~=12 and opencv-python-headless<5
against our pillow 13 and opencv-python 5, and takes 0.7-1.0 s and 79 MB just to import. What we need of it is a
few hundred lines of stdlib json and expat below."""

from pathlib import Path

from apps.datasets.formats.archive import safe_extract
from apps.datasets.formats.coco import looks_like_coco, read_coco
from apps.datasets.formats.common import (
    IMAGE_EXTS,
    NO_DEADLINE,
    Deadline,
    LabelEntry,
    Source,
    SourceItem,
    files_under,
    xml_root_tag,
)
from apps.datasets.formats.labelstudio import load_tasks, read_labelstudio
from apps.datasets.formats.xml_layouts import read_cvat, read_voc
from apps.datasets.formats.yolo import find_config, read_yolo, shallowest

LAYOUTS = {
    "yolo": "ultralytics YOLO (data.yaml with images/ and labels/, or Roboflow's train/valid/test folders)",
    "darknet": "YOLO 1.1 / Darknet as CVAT exports it (obj.data, obj.names, train.txt, obj_train_data/)",
    "yolo_names": "YOLO labels with obj.names or classes.txt (images/<split>/ + labels/<split>/)",
    "coco": "COCO detection JSON (annotations/instances_<split>.json, or Roboflow's _annotations.coco.json)",
    "voc": "Pascal VOC (Annotations/*.xml + JPEGImages/, or an .xml beside each image)",
    "labelstudio": "Label Studio JSON export (a list of tasks with rectangle labels)",
    "cvat": "CVAT for images 1.1 (annotations.xml)",
}

__all__ = [
    "IMAGE_EXTS",
    "LAYOUTS",
    "NO_DEADLINE",
    "Deadline",
    "LabelEntry",
    "Source",
    "SourceItem",
    "detect",
    "safe_extract",
]


def detect(root: Path, deadline: Deadline = NO_DEADLINE) -> Source:
    """Work out the layout under ``root`` and read it; an unknown layout's error names every layout looked for."""
    from vectormlops.errors import ValidationFailed

    xml_files = files_under(root, {".xml"})
    tags = {path: xml_root_tag(path) for path in xml_files}
    cvat = [p for p, tag in tags.items() if tag == "annotations"]
    if cvat:
        return read_cvat(root, cvat, deadline)
    voc = [p for p, tag in tags.items() if tag == "annotation"]
    if voc:
        return read_voc(root, voc, deadline)
    if find_config(root) is not None:
        return read_yolo(root, deadline)
    json_files = files_under(root, {".json"})
    coco = [p for p in json_files if looks_like_coco(p)]
    if coco:
        return read_coco(root, coco, deadline)
    tasks = [(p, t) for p in json_files if (t := load_tasks(p)) is not None]
    if tasks:
        return read_labelstudio(root, tasks, deadline)
    if shallowest(root, "images") is not None:  # images without labels: imported unlabeled
        return read_yolo(root, deadline)
    raise ValidationFailed(
        "No known dataset layout found. Looked for: " + "; ".join(LAYOUTS.values()) + ".",
        code="unknown_layout",
        details={"looked_for": list(LAYOUTS.values())},
    )
