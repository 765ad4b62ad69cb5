"""The YOLO family, one reader: ultralytics (``data.yaml``: list or dict ``names``, split folders or list files),
Roboflow's YOLO export (``train/images`` + ``train/labels``, ``val: ../valid/images``), YOLO 1.1 / Darknet as CVAT
writes it (``obj.data``, ``obj.names``, ``train.txt`` naming ``data/obj_train_data/a.jpg``, labels beside images)
and plain ``images/`` + ``labels/`` with ``obj.names`` or LabelImg's ``classes.txt``.

Labels of an image are at its path with the last ``images`` folder replaced by ``labels`` and ``.txt`` for the
suffix, else beside it. The split comes from the list file naming the image, else from its folders."""

import math
from pathlib import Path, PurePosixPath

import yaml

from apps.datasets.formats.common import (
    IMAGE_EXTS,
    NO_DEADLINE,
    Deadline,
    ImageIndex,
    LabelEntry,
    Source,
    SourceItem,
    hidden,
    split_from_name,
    split_of,
)
from vectormlops.errors import ValidationFailed

NAME_FILES = ("obj.names", "classes.txt")
LIST_FILE_SPLITS = {"train.txt": "train", "valid.txt": "val", "val.txt": "val", "test.txt": "test"}


def shallowest(root: Path, pattern: str) -> Path | None:
    found = [p for p in root.rglob(pattern) if not hidden(p.relative_to(root)) and not p.is_symlink()]
    return min(found, key=lambda p: (len(p.parts), str(p))) if found else None


def find_config(root: Path) -> tuple[str, Path] | None:
    """The file that marks a YOLO layout, most specific first."""
    for kind, pattern in (("yolo", "data.yaml"), ("darknet", "obj.data"), ("yolo", "*.yaml"), ("yolo", "*.yml")):
        found = shallowest(root, pattern)
        if found is not None:
            return kind, found
    for name in NAME_FILES:
        found = shallowest(root, name)
        if found is not None:
            return "yolo", found
    found = shallowest(root, "labels")
    return ("yolo", found) if found is not None and found.is_dir() else None


def _yaml_config(path: Path) -> tuple[list | None, dict]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace")) or {}
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"{path.name} is not valid YAML.", code="invalid_data_yaml") from exc
    if not isinstance(data, dict):
        raise ValidationFailed(f"{path.name} is not a YOLO dataset description.", code="invalid_data_yaml")
    names = data.get("names")
    if isinstance(names, dict):
        try:
            top = max(int(k) for k in names)
        except (TypeError, ValueError) as exc:
            raise ValidationFailed("data.yaml names must be keyed by class id.", code="invalid_data_yaml") from exc
        listed = [None] * (top + 1)
        for key, value in names.items():
            listed[int(key)] = str(value)
        names = listed
    elif isinstance(names, list):
        names = [str(n) for n in names]
    else:
        raise ValidationFailed(f"{path.name} has no class names.", code="invalid_data_yaml")
    lists = {}
    for key in ("train", "val", "test"):
        value = data.get(key)
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, str) and entry.lower().endswith(".txt"):
                lists[entry] = "val" if key == "val" else key
    return names, lists


def _darknet_config(path: Path) -> tuple[str | None, dict]:
    """``obj.data``: ``key = value`` lines; returns the names file it points to and its list files by split."""
    names, lists = None, {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "names":
            names = value
        elif key in ("train", "valid", "val", "test") and value:
            lists[value] = "val" if key in ("valid", "val") else key
    return names, lists


def _names_file(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _resolve(root: Path, base: Path, listed: str) -> list[Path]:
    """Where a path written in a config or list file may be: beside the config, at the root, or (CVAT writes
    ``data/...`` for darknet's folder) with its first folder dropped."""
    rel = PurePosixPath(listed.strip().replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return []
    options = [base / rel, root / rel]
    if len(rel.parts) > 1:
        options += [base / Path(*rel.parts[1:]), root / Path(*rel.parts[1:])]
    inside = root.resolve()
    return [p for p in options if inside in p.resolve().parents]


def read_yolo(root: Path, deadline: Deadline = NO_DEADLINE) -> Source:
    config = find_config(root)
    kind, marker = config if config else ("yolo", None)
    base = marker.parent if marker is not None else root
    names, lists = None, {}
    if marker is not None and marker.suffix in (".yaml", ".yml"):
        names, lists = _yaml_config(marker)
    elif marker is not None and marker.name == "obj.data":
        names_path, lists = _darknet_config(marker)
        candidates = _resolve(root, base, names_path) if names_path else []
        found = next((p for p in candidates if p.is_file()), None) or shallowest(root, "obj.names")
        names = _names_file(found) if found else None
    if names is None:
        names_path = next((p for p in (shallowest(root, n) for n in NAME_FILES) if p is not None), None)
        names = _names_file(names_path) if names_path else None
    for name, split in LIST_FILE_SPLITS.items():
        if (base / name).is_file():
            lists.setdefault(name, split)
    index = ImageIndex(root)
    listed_split: dict[Path, str] = {}
    for listed, split in lists.items():
        list_file = next((p for p in _resolve(root, base, listed) if p.is_file()), None)
        if list_file is None:
            continue
        for line in list_file.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line:
                continue
            image = next((p for p in _resolve(root, base, line) if p.is_file()), None) or index.find(line)
            if image is not None:
                listed_split[image.resolve()] = split
    source = Source(kind=kind, classes=names)
    for image_path in sorted(base.rglob("*")):
        rel = image_path.relative_to(base)
        if hidden(rel) or not image_path.is_file() or image_path.is_symlink():
            continue
        in_images = "images" in rel.parts[:-1]
        if image_path.suffix.lower() not in IMAGE_EXTS:
            if in_images and image_path.suffix.lower() not in {".txt", ".yaml", ".json", ".xml"}:
                source.label_error(str(rel), None, "not_an_image_file", "skipped: not .jpg/.png")
            continue
        deadline.check()
        parts = list(rel.parts)
        if in_images:
            at = len(parts) - 1 - parts[::-1].index("images")
            label_rel = Path(*parts[:at], "labels", *parts[at + 1 :]).with_suffix(".txt")
        else:
            label_rel = rel.with_suffix(".txt")
        label_path = base / label_rel
        boxes = None
        if label_path.is_file():
            boxes = _read_labels(label_path, str(label_rel), names, source.label_errors)
        split = listed_split.get(image_path.resolve()) or split_of(rel.parts[:-1])
        split = split or next((s for s in map(split_from_name, rel.parts[:-1]) if s), None)
        source.items.append(SourceItem(str(rel), image_path, split, boxes))
    return source


def _read_labels(path: Path, rel: str, names: list | None, errors: list) -> list[LabelEntry]:
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
        if values[2] <= 0 or values[3] <= 0:
            bad("out_of_range", "width and height must be greater than zero")
            continue
        entries.append(LabelEntry(rel, number, class_id, values, "yolo"))
    return entries
