"""Box cleaning, without the database: the one check every writer of boxes goes through (labels, imports,
robots' telemetry) and the translation between API boxes (label names) and stored boxes (class ids)."""

import math

from vectormlops.errors import ValidationFailed

MAX_BOXES = 500
BOX_TOLERANCE_PX = 0.5  # float round trips (YOLO's normalised centres) may overshoot the border by a hair


def finite_number(value) -> float | None:
    """A finite int or float as float; None for anything else (bools, strings, NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def boxes_validate(*, boxes, class_count: int, width: int, height: int) -> list[dict]:
    """Check DB-form boxes and return them cleaned (extra keys dropped, clamped to the image)."""
    if not isinstance(boxes, list):
        raise ValidationFailed("boxes must be a list.", code="invalid_boxes", details={"boxes": "must be a list"})
    if len(boxes) > MAX_BOXES:
        raise ValidationFailed(
            f"At most {MAX_BOXES} boxes per image.", code="too_many_boxes", details={"boxes": f"max {MAX_BOXES}"}
        )
    cleaned = []
    for index, item in enumerate(boxes):

        def bad(reason: str, index=index):
            raise ValidationFailed(
                f"Box {index}: {reason}", code="invalid_boxes", details={"boxes": {str(index): reason}, "index": index}
            )

        if not isinstance(item, dict):
            bad("must be an object with class_id and box.")
        class_id = item.get("class_id")
        if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < class_count:
            bad(f"class_id {class_id!r} is not one of the dataset's {class_count} classes.")
        coords = item.get("box")
        if not isinstance(coords, list | tuple) or len(coords) != 4:
            bad("box must be [x, y, width, height].")
        x, y, w, h = (finite_number(v) for v in coords)
        if None in (x, y, w, h):
            bad("box values must be finite numbers.")
        if w <= 0 or h <= 0:
            bad("width and height must be greater than zero.")
        t = BOX_TOLERANCE_PX
        if x < -t or y < -t or x + w > width + t or y + h > height + t:
            bad(f"box lies outside the {width}x{height} image.")
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(width), x + w), min(float(height), y + h)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            bad("box has no area inside the image.")
        cleaned.append(
            {"class_id": class_id, "box": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]}
        )
    return cleaned


def boxes_from_api(dataset, boxes) -> list[dict]:
    """API boxes ``{"label", "box"}`` to DB boxes ``{"class_id", "box"}``; an unknown label is a 400."""
    if not isinstance(boxes, list):
        raise ValidationFailed("boxes must be a list.", code="invalid_boxes", details={"boxes": "must be a list"})
    index = {name: i for i, name in enumerate(dataset.classes)}
    result = []
    for i, item in enumerate(boxes):
        if not isinstance(item, dict):
            raise ValidationFailed(
                f"Box {i}: must be an object with label and box.",
                code="invalid_boxes",
                details={"boxes": {str(i): "must be an object"}, "index": i},
            )
        label = item.get("label")
        if label not in index:
            raise ValidationFailed(
                f"Box {i}: unknown label {label!r}.",
                code="unknown_label",
                details={"boxes": {str(i): f"unknown label {label!r}"}, "index": i, "classes": list(dataset.classes)},
            )
        result.append({"class_id": index[label], "box": item.get("box")})
    return result


def boxes_to_api(dataset, boxes) -> list[dict]:
    """DB boxes to API boxes (label names from the dataset's current classes)."""
    names = dataset.classes
    return [
        {"label": names[b["class_id"]] if 0 <= b["class_id"] < len(names) else str(b["class_id"]), "box": b["box"]}
        for b in boxes or []
    ]
