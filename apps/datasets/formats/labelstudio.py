"""Label Studio's JSON export (a list of tasks) and its JSON-MIN variant: rectangle labels in percent of the image,
images found by file name. Label Studio keeps an uploaded file as ``/data/upload/<project>/<8 hex>-<name>``, local
files as ``/data/local-files/?d=<path>``; both are looked up under the import's root, the upload's random prefix
also without it. Of several annotations of a task the last one not cancelled counts (the export lists them in the
order they were made); predictions are not labels and are left out."""

import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

from apps.datasets.formats.common import (
    NO_DEADLINE,
    Deadline,
    ImageIndex,
    LabelEntry,
    Source,
    SourceItem,
    split_of,
)

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def load_tasks(path: Path) -> list | None:
    """The task list when ``path`` is a Label Studio export, else None."""
    try:
        with open(path, "rb") as handle:
            if handle.read(1 << 12).lstrip()[:1] != b"[":
                return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, list) or not doc or not all(isinstance(t, dict) for t in doc):
        return None
    if all(isinstance(t.get("data"), dict) or "image" in t for t in doc):
        return doc
    return None


def _image_ref(task: dict) -> str | None:
    data = task.get("data") if isinstance(task.get("data"), dict) else task
    value = data.get("image")
    if not isinstance(value, str):
        value = next((v for v in data.values() if isinstance(v, str) and ("/" in v or "." in v)), None)
    if not isinstance(value, str):
        return None
    url = urlparse(value)
    local = parse_qs(url.query).get("d")
    return unquote(local[0] if local else url.path).lstrip("/")


def _results(task: dict) -> list:
    if "label" in task and not isinstance(task.get("data"), dict):  # JSON-MIN
        return [dict(type="rectanglelabels", value=v) for v in task.get("label") or [] if isinstance(v, dict)]
    annotations = [
        a
        for a in (task.get("annotations") or task.get("completions") or [])
        if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    return list(annotations[-1].get("result") or []) if annotations else []


def read_labelstudio(root: Path, files: list[tuple[Path, list]], deadline: Deadline = NO_DEADLINE) -> Source:
    source = Source(kind="labelstudio", classes=None)
    index = ImageIndex(root)
    for path, tasks in files:
        rel_json = str(path.relative_to(root))
        for number, task in enumerate(tasks, start=1):
            deadline.check()
            ref = _image_ref(task)
            if not ref:
                source.label_error(rel_json, number, "missing_image", "task names no image")
                continue
            name = PurePosixPath(ref).name
            places = [root, path.parent, root / "images", path.parent / "images"]
            image_path = index.find(ref, places) or index.find(name, places)
            if image_path is None and UPLOAD_PREFIX.match(name):
                image_path = index.find(UPLOAD_PREFIX.sub("", name), places)
            if image_path is None:
                source.label_error(rel_json, number, "missing_image", f"{ref} not found")
                continue
            boxes = []
            for result in _results(task):
                if not isinstance(result, dict) or result.get("type") not in ("rectanglelabels", "rectangle", None):
                    continue
                value = result.get("value") or {}
                labels = value.get("rectanglelabels") or value.get("labels") or []
                try:
                    x, y, w, h = (float(value[k]) / 100 for k in ("x", "y", "width", "height"))
                except (KeyError, TypeError, ValueError):
                    source.label_error(rel_json, number, "invalid_bbox", "x/y/width/height")
                    continue
                if not labels:
                    source.label_error(rel_json, number, "unknown_class", "rectangle unlabeled")
                    continue
                if float(value.get("rotation") or 0) % 360:
                    source.label_error(rel_json, number, "rotated_box", "rotated box left out")
                    continue
                boxes.append(LabelEntry(rel_json, number, str(labels[0]), (x, y, w, h), "fraction"))
            rel = image_path.relative_to(root)
            source.items.append(SourceItem(str(rel), image_path, split_of(rel.parts[:-1]), boxes))
    return source
