"""What every reader shares (no database): the model a source is read into, split names, file lookup by name,
a time limit, and an XML parser that refuses DTDs and entities."""

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote
from xml.parsers import expat

from vectormlops.errors import ValidationFailed

IMAGE_EXTS = {".jpg", ".jpeg", ".png"}
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "valid": "val",
    "val": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass
class LabelEntry:
    """One box as a source states it. ``label``: a class id (YOLO) or a class name. ``mode`` says what ``values``
    are: ``yolo`` normalised centre (cx, cy, w, h); ``pixels`` (x, y, w, h); ``fraction`` (x, y, w, h) / image size."""

    file: str
    line: int | None
    label: int | str
    values: tuple
    mode: str


@dataclass
class SourceItem:
    """One image of a source dataset, its split there (if any) and its boxes (None: the source says nothing)."""

    name: str
    image_path: Path
    split: str | None
    boxes: list[LabelEntry] | None


@dataclass
class Source:
    """A source read whole: its layout, declared class names (what YOLO class ids index), images, and problems."""

    kind: str
    classes: list | None
    items: list[SourceItem] = field(default_factory=list)
    label_errors: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)  # files looked at and left out, with the reason

    def label_error(self, file: str, line: int | None, code: str, message: str) -> None:
        """A problem with one label (or the image it names), reported with the import and left out of it."""
        self.label_errors.append({"file": file, "line": line, "code": code, "message": message})


class Deadline:
    """The time limit of one import; readers and the importer check it between files."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise ValidationFailed(
                f"The import ran past its time limit of {self.seconds:g} s and was stopped.",
                code="import_timeout",
                details={"limit_s": self.seconds},
            )


NO_DEADLINE = Deadline(None)


def hidden(rel: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.parts)


def unsafe_name(name: str) -> bool:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    return ".." in PurePosixPath(normalised).parts


def split_of(parts) -> str | None:
    for part in parts:
        if part.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[part.lower()]
    return None


def split_from_name(name: str) -> str | None:
    """``instances_train2017`` -> train, ``valid.txt`` -> val: the first split word inside a file name."""
    for token in name.lower().replace("-", "_").replace(".", "_").split("_"):
        token = token.rstrip("0123456789")
        if token in SPLIT_NAMES:
            return SPLIT_NAMES[token]
    return None


def files_under(root: Path, suffixes: set[str]) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in suffixes and p.is_file() and not p.is_symlink() and not hidden(p.relative_to(root))
    )


class ImageIndex:
    """Finds an image a label file names: first at the places the layout says, then by its file name anywhere
    under the root (only when that name is unique there)."""

    def __init__(self, root: Path):
        self.root = root
        self.by_name: dict[str, list[Path]] = {}
        for path in files_under(root, IMAGE_EXTS):
            self.by_name.setdefault(path.name.lower(), []).append(path)

    def find(self, name: str, candidates=()) -> Path | None:
        name = unquote(name.replace("\\", "/"))
        if unsafe_name(name):
            return None
        for base in candidates:
            path = base / name
            if path.is_file() and not path.is_symlink() and self.root in path.resolve().parents:
                return path
        found = self.by_name.get(PurePosixPath(name).name.lower(), [])
        return found[0] if len(found) == 1 else None


def parse_xml(path: Path) -> ET.Element:
    """Parse an XML file with expat, refusing any DTD or entity declaration (billion laughs, external entities):
    what defusedxml's forbid_dtd does, without the dependency. Label tools never write a DTD."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_):
        raise ValueError("DTDs and entity declarations are not accepted")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, "rb") as handle:
            parser.ParseFile(handle)
        return builder.close()
    except (ValueError, expat.ExpatError) as exc:
        raise ValidationFailed(
            f"{path.name} is not acceptable XML ({exc}).", code="invalid_xml", details={"file": path.name}
        ) from exc


def xml_root_tag(path: Path) -> str | None:
    """The root element's name, read from the first bytes only (to tell VOC from CVAT without parsing)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    parser = expat.ParserCreate()
    found = []

    def start(tag, _attrs):
        found.append(tag)
        raise StopIteration

    parser.StartElementHandler = start
    try:
        parser.Parse(head, False)
    except (StopIteration, expat.ExpatError, ValueError):
        pass
    return found[0] if found else None
