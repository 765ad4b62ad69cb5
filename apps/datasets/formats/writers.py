"""Laying a frozen version out in each export format, the way the tools that read it expect (no database: the
caller passes the version's rows and a function that puts an image's bytes into the archive).

- ``yolo``: ultralytics' layout, ``data.yaml`` + ``images/<split>/`` + ``labels/<split>/``.
- ``coco``: Roboflow's COCO layout, ``<split>/_annotations.coco.json`` beside the split's images, category ids 1..n.
- ``voc``: ``Annotations/<name>.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``; corners as datumaro and CVAT
  write them (xmax = x + width).
- ``labelstudio``: Label Studio's JSON export (``result.json``, a task per image, rectangles in percent) with the
  images under ``images/<split>/``, named as local files (``/data/local-files/?d=images/...``).

Every file name is the image's sha256, so exporting and importing back gives the same images."""

import json
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

EXPORT_FORMATS = {
    "yolo": "YOLO (ultralytics)",
    "coco": "COCO JSON",
    "voc": "Pascal VOC",
    "labelstudio": "Label Studio JSON",
}
SPLITS = ("train", "val", "test")


@dataclass
class ExportItem:
    """One image of a frozen version: its stored name, size, split and boxes (pixels, class ids)."""

    sha256: str
    storage_name: str
    width: int
    height: int
    split: str
    boxes: list
    image_id: int

    @property
    def file_name(self) -> str:
        return f"{self.sha256}.{self.storage_name.rsplit('.', 1)[-1]}"


AddImage = Callable[[str, str], None]  # (storage name, name in the archive)


def yolo_line(class_id: int, box, width: int, height: int) -> str:
    x, y, w, h = box
    return f"{class_id} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"


def data_yaml(classes: list[str], present: set[str], root: str | None) -> str:
    lines = [] if root is None else [f"path: {json.dumps(root)}"]
    lines.append("train: images/train")
    # ultralytics needs a validation set: with none frozen, validate on train (stated here, not hidden).
    lines.append("val: images/val" if "val" in present else "val: images/train  # no val images in this version")
    if "test" in present:
        lines.append("test: images/test")
    lines.append(f"nc: {len(classes)}")
    lines.append("names:")
    lines.extend(f"  {i}: {json.dumps(name)}" for i, name in enumerate(classes))
    return "\n".join(lines) + "\n"


def _write_yolo(archive, items, classes, add_image, title) -> None:
    present = set()
    for item in items:
        present.add(item.split)
        add_image(item.storage_name, f"images/{item.split}/{item.file_name}")
        lines = [yolo_line(b["class_id"], b["box"], item.width, item.height) for b in item.boxes]
        archive.writestr(f"labels/{item.split}/{item.sha256}.txt", "\n".join(lines) + ("\n" if lines else ""))
    archive.writestr("data.yaml", data_yaml(classes, present, None))


def _write_coco(archive, items, classes, add_image, title) -> None:
    docs = {
        split: {
            "info": {"description": title},
            "categories": [{"id": i + 1, "name": n, "supercategory": "none"} for i, n in enumerate(classes)],
            "images": [],
            "annotations": [],
        }
        for split in SPLITS
    }
    annotation_id = 0
    for item in items:
        add_image(item.storage_name, f"{item.split}/{item.file_name}")
        doc = docs[item.split]
        doc["images"].append(
            {"id": item.image_id, "file_name": item.file_name, "width": item.width, "height": item.height}
        )
        for b in item.boxes:
            annotation_id += 1
            x, y, w, h = b["box"]
            doc["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": item.image_id,
                    "category_id": b["class_id"] + 1,
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 3),
                    "iscrowd": 0,
                }
            )
    for split, doc in docs.items():
        if doc["images"]:
            archive.writestr(f"{split}/_annotations.coco.json", json.dumps(doc))


def _coordinate(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _write_voc(archive, items, classes, add_image, title) -> None:
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    for item in items:
        add_image(item.storage_name, f"JPEGImages/{item.file_name}")
        splits[item.split].append(item.sha256)
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = item.file_name
        ET.SubElement(ET.SubElement(root, "source"), "database").text = title
        size = ET.SubElement(root, "size")
        for tag, value in (("width", item.width), ("height", item.height), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        ET.SubElement(root, "segmented").text = "0"
        for b in item.boxes:
            x, y, w, h = b["box"]
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = classes[b["class_id"]]
            for tag, value in (("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0"), ("occluded", "0")):
                ET.SubElement(obj, tag).text = value
            bndbox = ET.SubElement(obj, "bndbox")
            for tag, value in (("xmin", x), ("ymin", y), ("xmax", x + w), ("ymax", y + h)):
                ET.SubElement(bndbox, tag).text = _coordinate(value)
        ET.indent(root)
        archive.writestr(f"Annotations/{item.sha256}.xml", ET.tostring(root, encoding="unicode") + "\n")
    for split, stems in splits.items():
        if stems:
            archive.writestr(f"ImageSets/Main/{split}.txt", "\n".join(stems) + "\n")
    archive.writestr("labelmap.txt", "# label:color_rgb:parts:actions\n" + "".join(f"{c}:::\n" for c in classes))


def _write_labelstudio(archive, items, classes, add_image, title) -> None:
    tasks = []
    for number, item in enumerate(items, start=1):
        path = f"images/{item.split}/{item.file_name}"
        add_image(item.storage_name, path)
        results = []
        for index, b in enumerate(item.boxes):
            x, y, w, h = b["box"]
            results.append(
                {
                    "id": f"{item.sha256[:8]}-{index}",
                    "type": "rectanglelabels",
                    "from_name": "label",
                    "to_name": "image",
                    "original_width": item.width,
                    "original_height": item.height,
                    "image_rotation": 0,
                    "value": {
                        "x": x / item.width * 100,
                        "y": y / item.height * 100,
                        "width": w / item.width * 100,
                        "height": h / item.height * 100,
                        "rotation": 0,
                        "rectanglelabels": [classes[b["class_id"]]],
                    },
                }
            )
        tasks.append(
            {
                "id": number,
                "data": {"image": f"/data/local-files/?d={path}"},
                "annotations": [{"id": number, "result": results, "was_cancelled": False}],
                "predictions": [],
                "meta": {"split": item.split, "source": title},
            }
        )
    archive.writestr("result.json", json.dumps(tasks, indent=1))


WRITERS = {"yolo": _write_yolo, "coco": _write_coco, "voc": _write_voc, "labelstudio": _write_labelstudio}


def write_export(
    fmt: str, archive: zipfile.ZipFile, items: Iterable[ExportItem], classes: list[str], add_image: AddImage, title: str
) -> None:
    WRITERS[fmt](archive, items, list(classes), add_image, title)
