"""COCO object detection JSON: the standard layout (``annotations/instances_<split>.json`` with images under
``images/<split>/``, ``<split>2017/`` or beside the JSON) and Roboflow's (``<split>/_annotations.coco.json``).
Caption, keypoint, panoptic and image-info files are detected and left out with a note; crowd regions too
(``iscrowd: 1``, as ultralytics' own converter does)."""

import json
from pathlib import Path

from apps.datasets.formats.common import (
    NO_DEADLINE,
    Deadline,
    ImageIndex,
    LabelEntry,
    Source,
    SourceItem,
    split_from_name,
    split_of,
)
from vectormlops.errors import ValidationFailed


def looks_like_coco(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16).lstrip()
    except OSError:
        return False
    return head.startswith(b"{") and (b'"images"' in head or b'"annotations"' in head or b'"categories"' in head)


def _not_detection(doc: dict) -> str | None:
    """Why a COCO-shaped file is not an object detection file (None: it is one)."""
    if not isinstance(doc.get("images"), list):
        return "no images list"
    if "annotations" not in doc:
        return "image list without annotations (image_info file)"
    categories = [c for c in doc.get("categories") or [] if isinstance(c, dict)]
    if any("keypoints" in c for c in categories):
        return "keypoint annotations, not object detection"
    annotations = [a for a in doc.get("annotations") or [] if isinstance(a, dict)]
    if any("segments_info" in a for a in annotations[:50]):
        return "panoptic segmentation, not object detection"
    if any("caption" in a for a in annotations[:50]) and not any("bbox" in a for a in annotations[:50]):
        return "captions, not object detection"
    return None


def read_coco(root: Path, files: list[Path], deadline: Deadline = NO_DEADLINE) -> Source:
    docs = []
    notes = []
    for path in files:
        deadline.check()
        rel_json = str(path.relative_to(root))
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise ValidationFailed(
                f"{rel_json} is not valid JSON.", code="invalid_coco", details={"file": rel_json}
            ) from exc
        why = _not_detection(doc) if isinstance(doc, dict) else "not a JSON object"
        if why:
            notes.append({"file": rel_json, "note": f"skipped: {why}"})
        else:
            docs.append((path, doc))
    names_by_id: dict[int, str] = {}
    for _, doc in docs:
        for category in doc.get("categories") or []:
            if isinstance(category, dict) and isinstance(category.get("id"), int):
                names_by_id[category["id"]] = str(category.get("name"))
    source = Source(kind="coco", classes=[names_by_id[cid] for cid in sorted(names_by_id)], notes=notes)
    index = ImageIndex(root)
    for path, doc in docs:
        rel_json = str(path.relative_to(root))
        stem = path.stem.removeprefix("instances_")
        json_split = split_from_name(path.stem) or split_of(path.relative_to(root).parts[:-1])
        split_dirs = [stem] + ([json_split] if json_split else [])
        places = [path.parent, path.parent / "images"]
        for base in (path.parent, path.parent.parent, root):
            for name in split_dirs:
                places += [base / "images" / name, base / name]
        places += [path.parent.parent / "images", root / "images", root]
        local = {str(c.get("id")): str(c.get("name")) for c in doc.get("categories") or [] if isinstance(c, dict)}
        by_image: dict = {}
        crowd = 0
        for number, a in enumerate(doc.get("annotations") or [], start=1):
            if not isinstance(a, dict):
                continue
            if a.get("iscrowd") == 1:
                crowd += 1
                continue
            bbox = a.get("bbox")
            ok = isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)
            if not ok:
                source.label_error(rel_json, number, "invalid_bbox", "bbox must be 4 numbers")
                continue
            name = local.get(str(a.get("category_id")))
            if name is None:
                source.label_error(
                    rel_json, number, "unknown_class", f"category {a.get('category_id')} is not in categories"
                )
                continue
            by_image.setdefault(a.get("image_id"), []).append(
                LabelEntry(rel_json, number, name, tuple(float(v) for v in bbox), "pixels")
            )
        if crowd:
            notes.append({"file": rel_json, "note": f"{crowd} crowd regions (iscrowd: 1) left out"})
        for entry in doc["images"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
                continue
            deadline.check()
            file_name = entry["file_name"]
            image_path = index.find(file_name, places)
            if image_path is None:
                source.label_error(rel_json, None, "missing_image", f"{file_name} not found")
                continue
            rel = image_path.relative_to(root)
            split = json_split or split_of(rel.parts[:-1])
            source.items.append(SourceItem(str(rel), image_path, split, by_image.get(entry.get("id"), [])))
    return source
