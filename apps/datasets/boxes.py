"""Box cleaning, without the database: the one check every writer of boxes goes through (labels, imports,
robots' telemetry) and the translation between API boxes (label names) and stored boxes (class ids)."""

import math

from vectormlops.errors import ValidationFailed

MAX_BOXES = 500
BOX_TOLERANCE_PX = 0.5  # float round trips (YOLO's normalised centres) may overshoot the border by a hair
MAX_DETECTIONS = 50  # a robot's boxes kept per model and frame in telemetry (bounds storage and box matching)


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
        clipped = box_clip(x, y, w, h, width=width, height=height)
        if clipped[2] <= 0 or clipped[3] <= 0:
            bad("box has no area inside the image.")
        cleaned.append({"class_id": class_id, "box": [round(v, 3) for v in clipped]})
    return cleaned


def box_clip(
    x: float, y: float, w: float, h: float, *, width: float, height: float
) -> tuple[float, float, float, float]:
    """The part of a box inside a width x height image, as (x, y, w, h); w or h is <= 0 when nothing is inside."""
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return x0, y0, x1 - x0, y1 - y0


def _prediction_clean(item, *, width: float, height: float) -> tuple[list[float], float] | None:
    """One predicted box's ``(box, confidence)`` cleaned, or None when it is unusable: the box must be four finite
    numbers with at least a pixel on each side inside ``[0, width] x [0, height]`` (clipped to it), the confidence a
    finite number (1 when missing), clamped to [0, 1]."""
    box, conf = item.get("box"), finite_number(item.get("confidence", 1.0))
    if conf is None or not isinstance(box, list | tuple) or len(box) != 4:
        return None
    coords = [finite_number(v) for v in box]
    if None in coords:
        return None
    x, y, w, h = box_clip(*coords, width=width, height=height)
    if not (1 <= w < math.inf and 1 <= h < math.inf):  # a box too large to measure overflows to infinity
        return None
    return [x, y, w, h], min(1.0, max(0.0, conf))


def predicted_boxes_clean(boxes, *, classes: list[str], width: int, height: int) -> list[dict]:
    """A model's boxes (``{"class_id"|"label", "box", "confidence"}``, from the server or a robot) on a stored image
    of known size, cleaned leniently: predictions are suggestions, not labels, so a box with an unknown class, bad
    numbers or less than a pixel inside the image is dropped rather than refused. Boxes are clipped to the image (a
    robot's detector may run on a resized frame and overshoot by a pixel); confidences are clamped to [0, 1]."""
    clean = []
    for item in boxes or []:
        if not isinstance(item, dict):
            continue
        class_id = item.get("class_id")
        if class_id is None and item.get("label") in classes:
            class_id = classes.index(item["label"])
        if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < len(classes):
            continue
        cleaned = _prediction_clean(item, width=width, height=height)
        if cleaned is not None:
            box, conf = cleaned
            clean.append({"class_id": class_id, "box": [round(v, 2) for v in box], "confidence": round(conf, 4)})
    return clean


def detections_clean(detections, *, classes: list[str], limit: int = MAX_DETECTIONS) -> list[dict] | None:
    """A robot's detections as it reports them in telemetry, live and shadow (``[{"label", "confidence", "box":
    [x, y, w, h]}]``, pixels of its camera frame), cleaned like ``predicted_boxes_clean``; None when ``detections``
    is not a list.

    A telemetry record carries no frame size, so the normalisation is what holds for any frame: the label must be
    one of the dataset's classes, the four coordinates finite numbers, the box is clipped at the frame's origin
    (nothing lies left of or above pixel 0) and kept only with at least a pixel of width and height left; the
    confidence (1 when missing) is clamped to [0, 1]. Only the first ``limit`` entries are looked at: the count
    bounds what a record stores and what matching the live and shadow boxes (``limit`` x ``limit`` pairs) costs."""
    if not isinstance(detections, list):
        return None
    clean = []
    for item in detections[:limit]:
        if not isinstance(item, dict) or item.get("label") not in classes:
            continue
        cleaned = _prediction_clean(item, width=math.inf, height=math.inf)
        if cleaned is not None:
            box, conf = cleaned
            clean.append({"label": item["label"], "confidence": round(conf, 4), "box": [round(v, 2) for v in box]})
    return clean


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
