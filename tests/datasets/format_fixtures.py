"""Small exports written the way each tool writes them, quirks included, for the import tests. Every layout holds
the same three generated images and boxes (``EXPECTED``), so one check fits them all.

Quirks reproduced: CVAT's YOLO 1.1 list files naming ``data/obj_train_data/...``; Roboflow's ``val: ../valid/images``
and its dataset-named category 0; COCO's sparse category ids, crowd regions and the caption / keypoint / panoptic
files that sit beside the instances files; LabelImg's XML beside the image with a Windows ``<path>``; Label Studio's
8-hex prefix on uploaded files, percent boxes and a cancelled annotation; CVAT XML's polygons and subsets."""

import json

from tests.builders import jpeg

W, H = 96, 64
IMAGES = {"a": jpeg(11, W, H), "b": jpeg(12, W, H), "c": jpeg(13, W, H)}
SPLITS = {"a": "train", "b": "val", "c": "train"}
EXPECTED = {  # image -> [(class, [x, y, w, h] in pixels)]; c has no boxes
    "a": [("vector", [10.0, 8.0, 30.0, 20.0]), ("cube", [50.0, 30.0, 20.0, 16.0])],
    "b": [("cube", [0.0, 0.0, 40.0, 32.0])],
    "c": [],
}
CLASSES = ["vector", "cube"]


def yolo_text(name: str) -> bytes:
    lines = []
    for label, (x, y, w, h) in EXPECTED[name]:
        lines.append(f"{CLASSES.index(label)} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}")
    return ("\n".join(lines) + ("\n" if lines else "")).encode()


def cvat_yolo11() -> dict[str, bytes]:
    """CVAT's "YOLO 1.1" export: obj.data, obj.names, train.txt/valid.txt naming data/obj_<split>_data/<file>."""
    entries = {
        "obj.data": b"classes = 2\ntrain = data/train.txt\nvalid = data/valid.txt\nnames = data/obj.names\n"
        b"backup = backup/\n",
        "obj.names": b"vector\ncube\n",
    }
    lists = {"train": [], "valid": []}
    for name, data in IMAGES.items():
        folder = "obj_train_data" if SPLITS[name] == "train" else "obj_valid_data"
        entries[f"{folder}/{name}.jpg"] = data
        entries[f"{folder}/{name}.txt"] = yolo_text(name)
        lists["train" if SPLITS[name] == "train" else "valid"].append(f"data/{folder}/{name}.jpg")
    entries["train.txt"] = ("\n".join(lists["train"]) + "\n").encode()
    entries["valid.txt"] = ("\n".join(lists["valid"]) + "\n").encode()
    return entries


def yolo_obj_names() -> dict[str, bytes]:
    """obj.names + images/<split>/ + labels/<split>/ (no data.yaml)."""
    entries = {"obj.names": b"vector\ncube\n"}
    for name, data in IMAGES.items():
        entries[f"images/{SPLITS[name]}/{name}.jpg"] = data
        entries[f"labels/{SPLITS[name]}/{name}.txt"] = yolo_text(name)
    return entries


def roboflow_yolo() -> dict[str, bytes]:
    """Roboflow's YOLOv8 export: train/valid folders, data.yaml with paths relative to a folder above it."""
    entries = {
        "data.yaml": b"train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\n"
        b"names: ['vector', 'cube']\n\nroboflow:\n  workspace: ws\n  project: robots\n  version: 3\n",
        "README.roboflow.txt": b"Exported via roboflow.com\n",
    }
    for name, data in IMAGES.items():
        folder = "train" if SPLITS[name] == "train" else "valid"
        entries[f"{folder}/images/{name}_jpg.rf.0f1e2d.jpg"] = data
        entries[f"{folder}/labels/{name}_jpg.rf.0f1e2d.txt"] = yolo_text(name)
    return entries


def _coco_doc(names, category_ids: dict[str, int], extra_categories=(), file_name=lambda n: f"{n}.jpg") -> dict:
    doc = {
        "info": {"description": "fixture"},
        "licenses": [],
        "categories": [*extra_categories]
        + [{"id": cid, "name": label, "supercategory": "thing"} for label, cid in category_ids.items()],
        "images": [],
        "annotations": [],
    }
    for number, name in enumerate(names, start=1):
        doc["images"].append({"id": number * 7, "file_name": file_name(name), "width": W, "height": H})
        for label, box in EXPECTED[name]:
            doc["annotations"].append(
                {
                    "id": len(doc["annotations"]) + 1,
                    "image_id": number * 7,
                    "category_id": category_ids[label],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "segmentation": [],
                    "iscrowd": 0,
                }
            )
    return doc


def coco_standard(image_dirs: str = "images/{split}", suffix: str = "") -> dict[str, bytes]:
    """annotations/instances_<split>.json with images in images/<split>/ (or <split>2017/), sparse category ids,
    a crowd region, and the caption/keypoint/panoptic files COCO ships beside them."""
    ids = {"vector": 1, "cube": 3}
    entries = {}
    for split in ("train", "val"):
        names = [n for n in IMAGES if SPLITS[n] == split]
        doc = _coco_doc(names, ids)
        doc["annotations"].append(
            {"id": 99, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1}
        )
        entries[f"annotations/instances_{split}{suffix}.json"] = json.dumps(doc).encode()
        for name in names:
            entries[f"{image_dirs.format(split=split)}/{name}.jpg"] = IMAGES[name]
    images = [{"id": 7, "file_name": "a.jpg", "width": W, "height": H}]
    entries["annotations/captions_train.json"] = json.dumps(
        {"images": images, "annotations": [{"id": 1, "image_id": 7, "caption": "a robot"}]}
    ).encode()
    entries["annotations/person_keypoints_train.json"] = json.dumps(
        {
            "images": images,
            "categories": [{"id": 1, "name": "person", "keypoints": ["nose"], "skeleton": []}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5], "keypoints": [2, 2, 2]}],
        }
    ).encode()
    entries["annotations/panoptic_train.json"] = json.dumps(
        {"images": images, "annotations": [{"image_id": 7, "file_name": "a.png", "segments_info": []}]}
    ).encode()
    return entries


def roboflow_coco() -> dict[str, bytes]:
    """Roboflow's COCO export: <split>/_annotations.coco.json beside the images, category 0 named after the
    project (used by no box)."""
    entries = {}
    for split, folder in (("train", "train"), ("val", "valid")):
        names = [n for n in IMAGES if SPLITS[n] == split]
        placeholder = [{"id": 0, "name": "robots-3xk2", "supercategory": "none"}]
        doc = _coco_doc(names, {"vector": 1, "cube": 2}, placeholder, lambda n: f"{n}_jpg.rf.9a8b.jpg")
        entries[f"{folder}/_annotations.coco.json"] = json.dumps(doc).encode()
        for name in names:
            entries[f"{folder}/{name}_jpg.rf.9a8b.jpg"] = IMAGES[name]
    return entries


def _voc_xml(name: str, file_name: str, path: str = "") -> bytes:
    objects = "".join(
        f"<object><name>{label}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x:g}</xmin><ymin>{y:g}</ymin><xmax>{x + w:g}</xmax><ymax>{y + h:g}</ymax></bndbox></object>"
        for label, (x, y, w, h) in EXPECTED[name]
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<annotation><folder>JPEGImages</folder><filename>{file_name}'
        f"</filename>{path}<size><width>{W}</width><height>{H}</height><depth>3</depth></size><segmented>0"
        f"</segmented>{objects}</annotation>\n"
    ).encode()


def pascal_voc() -> dict[str, bytes]:
    """VOC as CVAT and datumaro write it: Annotations/, JPEGImages/, ImageSets/Main/<split>.txt."""
    entries = {"labelmap.txt": b"# label:color_rgb:parts:actions\nvector:::\ncube:::\nbackground:::\n"}
    for name, data in IMAGES.items():
        entries[f"JPEGImages/{name}.jpg"] = data
        entries[f"Annotations/{name}.xml"] = _voc_xml(name, f"{name}.jpg")
    for split in ("train", "val"):
        stems = [n for n in IMAGES if SPLITS[n] == split]
        entries[f"ImageSets/Main/{split}.txt"] = ("\n".join(stems) + "\n").encode()
    return entries


def labelimg_voc() -> dict[str, bytes]:
    """LabelImg: an XML beside each image in a split folder, its <path> a Windows path on the labeller's disk."""
    entries = {}
    for name, data in IMAGES.items():
        entries[f"{SPLITS[name]}/{name}.jpg"] = data
        path = f"<path>C:\\Users\\ann\\robots\\{name}.jpg</path>"
        entries[f"{SPLITS[name]}/{name}.xml"] = _voc_xml(name, f"{name}.jpg", path)
    return entries


def label_studio() -> dict[str, bytes]:
    """Label Studio's JSON export (the images zipped beside it by name): uploaded files carry an 8-hex prefix,
    boxes are percent, a cancelled annotation comes before the real one."""
    tasks = []
    for number, name in enumerate(IMAGES, start=1):
        results = [
            {
                "id": f"r{number}{i}",
                "type": "rectanglelabels",
                "from_name": "label",
                "to_name": "image",
                "original_width": W,
                "original_height": H,
                "image_rotation": 0,
                "value": {
                    "x": x / W * 100,
                    "y": y / H * 100,
                    "width": w / W * 100,
                    "height": h / H * 100,
                    "rotation": 0,
                    "rectanglelabels": [label],
                },
            }
            for i, (label, (x, y, w, h)) in enumerate(EXPECTED[name])
        ]
        cancelled = {"id": 100 + number, "result": [], "was_cancelled": True}
        tasks.append(
            {
                "id": number,
                "data": {"image": f"/data/upload/4/{number:02d}ab3f9c-{name}.jpg"},
                "annotations": [cancelled, {"id": number, "result": results, "was_cancelled": False}],
                "predictions": [],
            }
        )
    entries = {"project-4-at-2026-11-29-10-00-1f2e3d4c.json": json.dumps(tasks).encode()}
    entries.update({f"images/{name}.jpg": data for name, data in IMAGES.items()})
    return entries


def cvat_xml() -> dict[str, bytes]:
    """CVAT for images 1.1 from a project: subsets on images, images/<subset>/, a polygon beside the boxes."""
    labels = "".join(
        f"<label><name>{c}</name><color>#ff0000</color><type>any</type><attributes/></label>" for c in CLASSES
    )
    images = []
    entries = {}
    for number, (name, data) in enumerate(IMAGES.items()):
        subset = "Train" if SPLITS[name] == "train" else "Validation"
        boxes = "".join(
            f'<box label="{label}" source="manual" occluded="0" xtl="{x:.2f}" ytl="{y:.2f}" xbr="{x + w:.2f}" '
            f'ybr="{y + h:.2f}" z_order="0"></box>'
            for label, (x, y, w, h) in EXPECTED[name]
        )
        polygon = '<polygon label="cube" source="manual" occluded="0" points="1,1;5,1;5,5" z_order="0"/>'
        images.append(
            f'<image id="{number}" name="{name}.jpg" subset="{subset}" width="{W}" height="{H}">'
            f"{boxes}{polygon if name == 'a' else ''}</image>"
        )
        entries[f"images/{subset}/{name}.jpg"] = data
    entries["annotations.xml"] = (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><project><id>1</id>'
        f"<name>robots</name><labels>{labels}</labels></project></meta>{''.join(images)}</annotations>\n"
    ).encode()
    return entries


LAYOUTS = {
    "darknet": cvat_yolo11,
    "yolo_obj_names": yolo_obj_names,
    "roboflow_yolo": roboflow_yolo,
    "coco_standard": coco_standard,
    "coco_2017": lambda: coco_standard("{split}2017", "2017"),
    "roboflow_coco": roboflow_coco,
    "voc": pascal_voc,
    "labelimg_voc": labelimg_voc,
    "labelstudio": label_studio,
    "cvat": cvat_xml,
}
KINDS = {
    "darknet": "darknet",
    "yolo_obj_names": "yolo",
    "roboflow_yolo": "yolo",
    "coco_standard": "coco",
    "coco_2017": "coco",
    "roboflow_coco": "coco",
    "voc": "voc",
    "labelimg_voc": "voc",
    "labelstudio": "labelstudio",
    "cvat": "cvat",
}
