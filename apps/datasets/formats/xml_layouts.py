"""The two XML layouts. Pascal VOC: an ``<annotation>`` file per image, either ``Annotations/*.xml`` beside
``JPEGImages/`` (splits from ``ImageSets/Main/<split>.txt``) or an XML beside each image (LabelImg, Roboflow).
CVAT for images 1.1: one ``annotations.xml`` with an ``<image>`` per image and its ``<box>`` shapes (the images
under ``images/``, or ``images/<subset>/`` for a project). Boxes are corner coordinates in pixels, read as
datumaro reads them: x = xmin, width = xmax - xmin."""

from collections import Counter
from pathlib import Path

from apps.datasets.formats.common import (
    IMAGE_EXTS,
    NO_DEADLINE,
    SPLIT_NAMES,
    Deadline,
    ImageIndex,
    LabelEntry,
    Source,
    SourceItem,
    files_under,
    parse_xml,
    split_of,
)


def _number(text) -> float:
    return float(str(text).strip())


def _voc_splits(voc_root: Path) -> dict[str, str]:
    sets = voc_root / "ImageSets" / "Main"
    splits = {}
    for name in ("trainval", "train", "val", "test"):  # the specific lists win over trainval
        listed = sets / f"{name}.txt"
        if listed.is_file():
            for line in listed.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.split():
                    splits[line.split()[0]] = SPLIT_NAMES.get(name, "train")
    return splits


def read_voc(root: Path, files: list[Path], deadline: Deadline = NO_DEADLINE) -> Source:
    source = Source(kind="voc", classes=None)
    index = ImageIndex(root)
    split_lists: dict[Path, dict] = {}
    seen = set()
    for path in files:
        deadline.check()
        rel_xml = str(path.relative_to(root))
        doc = parse_xml(path)
        voc_root = path.parent.parent if path.parent.name == "Annotations" else path.parent
        if voc_root not in split_lists:
            split_lists[voc_root] = _voc_splits(voc_root)
        file_name = (doc.findtext("filename") or "").strip()
        beside = [path.with_suffix(ext) for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")]
        image_path = next((p for p in beside if p.is_file() and not p.is_symlink()), None)
        if image_path is None and file_name:
            image_path = index.find(file_name, [voc_root / "JPEGImages", path.parent, voc_root, root])
        if image_path is None and (doc.findtext("path") or "").strip():
            image_path = index.find(doc.findtext("path").strip().replace("\\", "/").rsplit("/", 1)[-1])
        if image_path is None:
            missing = f"{file_name or path.stem} not found"
            source.label_error(rel_xml, None, "missing_image", missing)
            continue
        boxes = []
        for number, obj in enumerate(doc.iter("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            bndbox = obj.find("bndbox")
            try:
                xmin, ymin, xmax, ymax = (_number(bndbox.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                source.label_error(rel_xml, number, "invalid_bbox", "bndbox needs 4 numbers")
                continue
            if not name:
                source.label_error(rel_xml, number, "unknown_class", "object without a name")
                continue
            boxes.append(LabelEntry(rel_xml, number, name, (xmin, ymin, xmax - xmin, ymax - ymin), "pixels"))
        rel = image_path.relative_to(root)
        split = split_lists[voc_root].get(image_path.stem) or split_of(rel.parts[:-1])
        seen.add(image_path)
        source.items.append(SourceItem(str(rel), image_path, split, boxes))
    for voc_root, splits in split_lists.items():  # images VOC lists without an XML: imported unlabeled
        images = voc_root / "JPEGImages"
        for image_path in files_under(images, IMAGE_EXTS) if images.is_dir() else []:
            if image_path not in seen:
                rel = image_path.relative_to(root)
                source.items.append(SourceItem(str(rel), image_path, splits.get(image_path.stem), None))
    return source


CVAT_OTHER_SHAPES = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton", "tag")


def read_cvat(root: Path, files: list[Path], deadline: Deadline = NO_DEADLINE) -> Source:
    source = Source(kind="cvat", classes=None)
    index = ImageIndex(root)
    classes: list[str] = []
    for path in files:
        deadline.check()
        rel_xml = str(path.relative_to(root))
        doc = parse_xml(path)
        for label in doc.iter("label"):
            name = (label.findtext("name") or "").strip()
            if name and name not in classes:
                classes.append(name)
        left_out = Counter()
        if doc.find("track") is not None:
            left_out["track"] += len(doc.findall("track"))
        for number, element in enumerate(doc.iter("image"), start=1):
            deadline.check()
            name = element.get("name") or ""
            subset = element.get("subset") or ""
            subset_split = SPLIT_NAMES.get(subset.lower())
            places = [path.parent / "images" / subset, path.parent / "images", path.parent, root / "images", root]
            image_path = index.find(name, places if subset else places[1:])
            if image_path is None:
                source.label_error(rel_xml, number, "missing_image", f"{name} not found")
                continue
            boxes = []
            for child in element:
                if child.tag in CVAT_OTHER_SHAPES:
                    left_out[child.tag] += 1
                if child.tag != "box":
                    continue
                try:
                    xtl, ytl, xbr, ybr = (_number(child.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
                except (TypeError, ValueError):
                    source.label_error(rel_xml, number, "invalid_bbox", "box needs 4 corners")
                    continue
                if _number(child.get("rotation") or 0) % 360:
                    source.label_error(rel_xml, number, "rotated_box", "rotated box left out")
                    continue
                label = (child.get("label") or "").strip()
                boxes.append(LabelEntry(rel_xml, number, label, (xtl, ytl, xbr - xtl, ybr - ytl), "pixels"))
            rel = image_path.relative_to(root)
            source.items.append(SourceItem(str(rel), image_path, subset_split or split_of(rel.parts[:-1]), boxes))
        if left_out:
            shapes = ", ".join(f"{n} {tag}" for tag, n in sorted(left_out.items()))
            source.notes.append({"file": rel_xml, "note": f"only boxes are imported; left out: {shapes}"})
    source.classes = classes
    return source
