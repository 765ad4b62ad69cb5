"""Reading foreign dataset layouts (no database): safe zip extraction, YOLO (plain and Roboflow's export layout)
and COCO JSON. YOLO's normalised centre format lives only here and in the exporter."""

import json
import math
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from vectormlops.errors import PayloadTooLarge, ValidationFailed

IMAGE_EXTS = {".jpg", ".jpeg", ".png"}
SPLIT_NAMES = {"train": "train", "valid": "val", "val": "val", "validation": "val", "test": "test"}
CHUNK = 1024 * 1024


@dataclass
class LabelEntry:
    """One box read from a source: normalised YOLO (cx, cy, w, h) or COCO pixels (x, y, w, h)."""

    file: str
    line: int
    class_id: int
    values: tuple
    normalised: bool


@dataclass
class SourceItem:
    """One image of a source dataset, its split there (if any) and its boxes (None: no label file)."""

    name: str
    image_path: Path
    split: str | None
    boxes: list[LabelEntry] | None


@dataclass
class Source:
    kind: str
    classes: list | None
    items: list[SourceItem] = field(default_factory=list)
    label_errors: list[dict] = field(default_factory=list)


# --- zip -------------------------------------------------------------------------------------------------------


def _unsafe(name: str) -> bool:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    return ".." in PurePosixPath(normalised).parts


def safe_extract(archive_path: Path, dest: Path, *, max_bytes: int) -> None:
    """Extract a zip, refusing the whole archive on an entry that escapes ``dest`` (zip slip) or when the content
    grows past ``max_bytes`` (zip bomb: checked on the declared sizes first, then on the bytes really written)."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValidationFailed("The file is not a readable zip archive.", code="bad_archive") from exc
    with archive:
        members = archive.infolist()
        for info in members:
            if _unsafe(info.filename):
                raise ValidationFailed(
                    f"The archive entry {info.filename!r} points outside the archive.",
                    code="zip_slip",
                    details={"entry": info.filename},
                )
        declared = sum(info.file_size for info in members)
        if declared > max_bytes:
            raise PayloadTooLarge(
                f"The archive unpacks to {declared} bytes, more than the limit of {max_bytes}.",
                code="archive_too_large",
                details={"max_bytes": max_bytes, "declared_bytes": declared},
            )
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        for info in members:
            if info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                continue  # never follow links planted in an archive
            target = (root / info.filename.replace("\\", "/")).resolve()
            if root not in target.parents:
                raise ValidationFailed(
                    f"The archive entry {info.filename!r} points outside the archive.",
                    code="zip_slip",
                    details={"entry": info.filename},
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise PayloadTooLarge(
                                f"The archive unpacks to more than the limit of {max_bytes} bytes.",
                                code="archive_too_large",
                                details={"max_bytes": max_bytes},
                            )
                        dst.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
                raise ValidationFailed(
                    f"The archive entry {info.filename!r} is corrupt ({exc}).",
                    code="bad_archive",
                    details={"entry": info.filename},
                ) from exc


# --- detection -------------------------------------------------------------------------------------------------


def _skip(path: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def _shallowest(root: Path, pattern: str) -> Path | None:
    found = [p for p in root.rglob(pattern) if not _skip(p.relative_to(root))]
    return min(found, key=lambda p: (len(p.parts), str(p))) if found else None


def detect(root: Path) -> Source:
    """Work out the layout under ``root`` and read it."""
    data_yaml = _shallowest(root, "data.yaml") or _shallowest(root, "*.yaml")
    labels_dir = _shallowest(root, "labels")
    if data_yaml is not None or labels_dir is not None:
        return read_yolo(data_yaml.parent if data_yaml else labels_dir.parent, data_yaml)
    coco = [p for p in sorted(root.rglob("*.json")) if not _skip(p.relative_to(root)) and _is_coco(p)]
    if coco:
        return read_coco(root, coco)
    images_dir = _shallowest(root, "images")
    if images_dir is not None:
        return read_yolo(images_dir.parent, None)
    raise ValidationFailed(
        "No YOLO (data.yaml, images/, labels/) or COCO JSON layout found.", code="unknown_layout", details={}
    )


def _yaml_names(data_yaml: Path | None) -> list | None:
    if data_yaml is None:
        return None
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8", errors="replace")) or {}
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"{data_yaml.name} is not valid YAML.", code="invalid_data_yaml") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            top = max(int(k) for k in names)
        except (TypeError, ValueError) as exc:
            raise ValidationFailed("data.yaml names must be keyed by class id.", code="invalid_data_yaml") from exc
        listed = [None] * (top + 1)
        for key, value in names.items():
            listed[int(key)] = str(value)
        return listed
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValidationFailed("data.yaml has no class names.", code="invalid_data_yaml")


def _split_of(parts: tuple[str, ...]) -> str | None:
    for part in parts:
        if part.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[part.lower()]
    return None


def read_yolo(base: Path, data_yaml: Path | None) -> Source:
    """Images under any ``images`` folder below ``base``; labels at the same place with ``images`` -> ``labels``
    (covers ``images/train`` + ``labels/train`` and Roboflow's ``train/images`` + ``train/labels``)."""
    names = _yaml_names(data_yaml)
    source = Source(kind="yolo", classes=names)
    for image_path in sorted(base.rglob("*")):
        rel = image_path.relative_to(base)
        if _skip(rel) or not image_path.is_file() or "images" not in rel.parts[:-1]:
            continue
        if image_path.suffix.lower() not in IMAGE_EXTS:
            if image_path.suffix.lower() not in {".txt", ".yaml", ".json"}:
                source.label_errors.append(
                    {"file": str(rel), "line": None, "code": "not_an_image_file", "message": "skipped: not .jpg/.png"}
                )
            continue
        parts = list(rel.parts)
        index = len(parts) - 1 - parts[::-1].index("images")
        label_rel = Path(*parts[:index], "labels", *parts[index + 1 :]).with_suffix(".txt")
        label_path = base / label_rel
        boxes = None
        if label_path.is_file():
            boxes = _read_yolo_labels(label_path, str(label_rel), names, source.label_errors)
        source.items.append(SourceItem(str(rel), image_path, _split_of(rel.parts[:-1]), boxes))
    return source


def _read_yolo_labels(path: Path, rel: str, names: list | None, errors: list) -> list[LabelEntry]:
    entries = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue

        def bad(code: str, message: str, number=number):
            errors.append({"file": rel, "line": number, "code": code, "message": message})

        fields = line.split()
        if len(fields) != 5:
            bad("wrong_field_count", f"expected 5 fields (class cx cy w h), found {len(fields)}")
            continue
        try:
            class_id = int(fields[0])
            values = tuple(float(v) for v in fields[1:])
        except ValueError:
            bad("not_a_number", "fields must be numbers")
            continue
        if class_id < 0 or (names is not None and (class_id >= len(names) or names[class_id] is None)):
            bad("unknown_class", f"class id {class_id} is not in the class names")
            continue
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            bad("out_of_range", "coordinates must lie within 0..1")
            continue
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            bad("out_of_range", "width and height must be greater than zero")
            continue
        entries.append(LabelEntry(rel, number, class_id, values, True))
    return entries


def _is_coco(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return b'"images"' in head or b'"annotations"' in head or b'"categories"' in head


def read_coco(root: Path, files: list[Path]) -> Source:
    """COCO JSON files; each image's ``file_name`` is resolved next to its JSON, then under ``images/``."""
    names_by_id: dict[int, str] = {}
    docs = []
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise ValidationFailed(
                f"{path.relative_to(root)} is not valid JSON.", code="invalid_coco", details={"file": path.name}
            ) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise ValidationFailed(
                f"{path.relative_to(root)} has no images list.", code="invalid_coco", details={"file": path.name}
            )
        for category in doc.get("categories") or []:
            if isinstance(category, dict) and isinstance(category.get("id"), int):
                names_by_id[category["id"]] = str(category.get("name"))
        docs.append((path, doc))
    # Dense class ids in the order of the category ids; Roboflow's "supercategory" placeholder (id 0 with no
    # annotations of its own) is kept out when it names the dataset rather than a class.
    used = {
        a.get("category_id")
        for _, doc in docs
        for a in doc.get("annotations") or []
        if isinstance(a, dict) and isinstance(a.get("category_id"), int)
    }
    category_ids = sorted(cid for cid in names_by_id if cid in used or not used)
    dense = {cid: i for i, cid in enumerate(category_ids)}
    source = Source(kind="coco", classes=[names_by_id[cid] for cid in category_ids])
    for path, doc in docs:
        rel_json = str(path.relative_to(root))
        by_image: dict = {}
        for number, a in enumerate(doc.get("annotations") or [], start=1):
            if not isinstance(a, dict):
                continue
            bbox = a.get("bbox")
            cid = a.get("category_id")
            ok = isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)
            if not ok:
                source.label_errors.append(
                    {"file": rel_json, "line": number, "code": "invalid_bbox", "message": "bbox must be 4 numbers"}
                )
                continue
            if cid not in dense:
                source.label_errors.append(
                    {"file": rel_json, "line": number, "code": "unknown_class", "message": f"category {cid}"}
                )
                continue
            by_image.setdefault(a.get("image_id"), []).append(
                LabelEntry(rel_json, number, dense[cid], tuple(float(v) for v in bbox), False)
            )
        for entry in doc["images"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
                continue
            file_name = entry["file_name"]
            if _unsafe(file_name):
                source.label_errors.append(
                    {"file": rel_json, "line": None, "code": "zip_slip", "message": f"unsafe file_name {file_name!r}"}
                )
                continue
            image_path = next(
                (
                    p
                    for p in (path.parent / file_name, path.parent / "images" / file_name, root / file_name)
                    if p.is_file()
                ),
                None,
            )
            if image_path is None:
                source.label_errors.append(
                    {"file": rel_json, "line": None, "code": "missing_image", "message": f"{file_name} not found"}
                )
                continue
            rel = image_path.relative_to(root)
            split = _split_of(rel.parts[:-1]) or _split_of(path.relative_to(root).parts[:-1])
            source.items.append(SourceItem(str(rel), image_path, split, by_image.get(entry.get("id"), [])))
    return source
