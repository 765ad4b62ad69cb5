"""Labels the model doubts: compare an approved image's boxes with a trained model's predictions and say, per box,
why it looks wrong. Plain Python on plain data (no Django, no ultralytics), so the rule is easy to read and test.

The rule (boxes are [x, y, w, h] pixels; IoU = intersection over union):
- ``wrong_class``: a confident prediction (>= CONFIDENT) of another class overlaps the label (IoU >= MATCH_IOU)
  and no prediction of the label's class does; score = that prediction's confidence.
- ``loose``: the best prediction of the label's class overlaps it only partly (IoU in [SUPPORT_IOU, TIGHT_IOU));
  score = (1 - IoU) x the prediction's confidence (a shifted or badly sized box).
- ``unsupported``: no prediction of any class (>= SEEN) touches the label (IoU < SUPPORT_IOU); score UNSUPPORTED x
  (1 - the best confidence of any weaker prediction that does touch it), so a faint detection there doubts less.
- ``missing``: a confident prediction that no label touches (same class, IoU >= SUPPORT_IOU) and that is not
  already explained by a ``wrong_class`` or ``loose`` label; score = its confidence.
"Confident" is CONFIDENT (0.5) for a well trained model; a young model that is right at lower confidences gets a
lower bar (``calibrated_confidence``: 0.8 x the median confidence of its predictions that match a label, never
below SEEN). An image's score is 1 - prod(1 - box score): the chance that at least one of its boxes is wrong,
treating the box scores as independent guesses. Images where the model agrees score 0.
"""

CONFIDENT = 0.5
SEEN = 0.25
MATCH_IOU = 0.5
TIGHT_IOU = 0.75
SUPPORT_IOU = 0.1
UNSUPPORTED = 0.5


def iou(a, b) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _best(box, predictions, keep) -> tuple[float, dict | None]:
    best, found = 0.0, None
    for p in predictions:
        if keep(p):
            value = iou(box, p["box"])
            if value > best:
                best, found = value, p
    return best, found


def calibrated_confidence(pairs: list[tuple[list[dict], list[dict]]]) -> float:
    """The "confident" bar for one model from (labels, predictions) of many images: 0.8 x the median confidence of
    its predictions that match a label (same class, IoU >= MATCH_IOU), between SEEN and CONFIDENT; CONFIDENT when
    fewer than 5 labels are matched (too little to judge)."""
    hits = []
    for labels, predictions in pairs:
        for label in labels:
            cid = label["class_id"]
            value, found = _best(label["box"], predictions, lambda p, cid=cid: p["class_id"] == cid)
            if found is not None and value >= MATCH_IOU:
                hits.append(found["confidence"])
    if len(hits) < 5:
        return CONFIDENT
    hits.sort()
    median = hits[len(hits) // 2]
    return round(min(CONFIDENT, max(SEEN, 0.8 * median)), 3)


def label_doubts(
    labels: list[dict], predictions: list[dict], classes: list[str], confident: float = CONFIDENT
) -> list[dict]:
    """Reasons to doubt ``labels`` ({class_id, box}) given ``predictions`` ({class_id, box, confidence})."""

    def name(class_id) -> str:
        return classes[class_id] if 0 <= class_id < len(classes) else str(class_id)

    reasons = []
    explained: set[int] = set()  # predictions a wrong_class reason already points at
    for label in labels:
        cid, box = label["class_id"], label["box"]
        same_iou, same = _best(box, predictions, lambda p, cid=cid: p["class_id"] == cid and p["confidence"] >= SEEN)
        other_iou, other = _best(
            box, predictions, lambda p, cid=cid: p["class_id"] != cid and p["confidence"] >= confident
        )
        any_iou, _ = _best(box, predictions, lambda p: p["confidence"] >= SEEN)
        base = {"label": name(cid), "box": box}
        if other is not None and other_iou >= MATCH_IOU and same_iou < MATCH_IOU:
            explained.add(id(other))
            reasons.append(
                {
                    **base,
                    "kind": "wrong_class",
                    "predicted": name(other["class_id"]),
                    "confidence": round(other["confidence"], 3),
                    "iou": round(other_iou, 3),
                    "score": round(other["confidence"], 3),
                    "message": f"the model sees a {name(other['class_id'])} here "
                    f"({other['confidence']:.0%} sure), not a {name(cid)}",
                }
            )
        elif any_iou < SUPPORT_IOU:
            faint = max((p["confidence"] for p in predictions if iou(box, p["box"]) >= SUPPORT_IOU), default=0.0)
            reasons.append(
                {
                    **base,
                    "kind": "unsupported",
                    "predicted": None,
                    "confidence": None,
                    "iou": round(any_iou, 3),
                    "score": round(UNSUPPORTED * (1 - faint), 3),
                    "message": f"the model sees nothing where this {name(cid)} is",
                }
            )
        elif same is not None and SUPPORT_IOU <= same_iou < TIGHT_IOU:
            explained.add(id(same))
            score = (1 - same_iou) * same["confidence"]
            reasons.append(
                {
                    **base,
                    "kind": "loose",
                    "predicted": name(cid),
                    "confidence": round(same["confidence"], 3),
                    "iou": round(same_iou, 3),
                    "score": round(score, 3),
                    "suggested_box": [round(v, 2) for v in same["box"]],
                    "message": f"the model's {name(cid)} overlaps this box only {same_iou:.0%} (shifted or mis-sized?)",
                }
            )
    for p in predictions:
        if p["confidence"] < confident or id(p) in explained:
            continue
        matched, _ = _best(p["box"], labels, lambda label, p=p: label["class_id"] == p["class_id"])
        if matched >= SUPPORT_IOU:
            continue
        reasons.append(
            {
                "kind": "missing",
                "label": None,
                "box": [round(v, 2) for v in p["box"]],
                "predicted": name(p["class_id"]),
                "confidence": round(p["confidence"], 3),
                "iou": round(matched, 3),
                "score": round(p["confidence"], 3),
                "message": f"the model sees a {name(p['class_id'])} ({p['confidence']:.0%} sure) with no label",
            }
        )
    return sorted(reasons, key=lambda r: -r["score"])


def image_doubt(reasons: list[dict]) -> float:
    """One score per image: 1 - prod(1 - box score)."""
    keep = 1.0
    for reason in reasons:
        keep *= 1.0 - min(1.0, max(0.0, reason["score"]))
    return round(1.0 - keep, 4)
