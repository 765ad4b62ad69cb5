"""Shadow evidence: a candidate runs beside the live model on the robots' own frames and is never acted on.

One concept in one place: how the two models' boxes are matched (greedy, same label, IoU >= 0.5, as the agent's
``agent/shadow.py`` does), how a telemetry record's ``shadow`` part is cleaned (its boxes by datasets'
``detections_clean``, like the live ones), the field numbers people and the gate read (frames, agreement, detection
rate, confidence and latency of each model, per robot and lighting slice, over time, from the hourly buckets
monitoring sums for ``hooks.shadow_field_sums``), the disagreement frames and, once people labelled them, the field
precision and recall of both models on them. The gate's shadow bounds are ``shadow_check``.
"""

import math
from dataclasses import dataclass

import numpy as np

from apps.datasets.boxes import detections_clean, finite_number
from apps.datasets.models import Image
from apps.deployments import hooks

MATCH_IOU = 0.5
LIGHTING_BINS = (("dark", 0.3), ("normal", 0.65), ("bright", math.inf))  # frame brightness [0, 1] upper bounds


# --- boxes ------------------------------------------------------------------------------------------------------


def matched_pairs(first: list[dict], second: list[dict], *, iou_threshold: float = MATCH_IOU) -> list[tuple]:
    """(i, j) pairs of boxes matched greedily, highest IoU first: same label, IoU >= threshold, each box once.
    The IoU matrix is computed with numpy: a telemetry batch may hold 500 frames of 50 boxes per model."""
    if not first or not second:
        return []
    a = np.array([d["box"] for d in first], dtype=float).reshape(-1, 4)
    b = np.array([d["box"] for d in second], dtype=float).reshape(-1, 4)
    with np.errstate(all="ignore"):  # absurd (yet finite) boxes overflow to inf/nan: no match, no warning
        a_right, a_bottom = (a[:, 0] + a[:, 2])[:, None], (a[:, 1] + a[:, 3])[:, None]
        b_right, b_bottom = (b[:, 0] + b[:, 2])[None, :], (b[:, 1] + b[:, 3])[None, :]
        w = np.minimum(a_right, b_right) - np.maximum(a[:, 0, None], b[None, :, 0])
        h = np.minimum(a_bottom, b_bottom) - np.maximum(a[:, 1, None], b[None, :, 1])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
        iou = np.where(union > 0, inter / union, 0.0)
    same = np.array([x["label"] for x in first])[:, None] == np.array([y["label"] for y in second])[None, :]
    rows, cols = np.nonzero(same & (iou >= iou_threshold))
    candidates = sorted(zip(iou[rows, cols].tolist(), rows.tolist(), cols.tolist(), strict=True), reverse=True)
    used_first, used_second, pairs = set(), set(), []
    for _iou, i, j in candidates:
        if i in used_first or j in used_second:
            continue
        used_first.add(i)
        used_second.add(j)
        pairs.append((i, j))
    return pairs


def lighting_slice(brightness: float | None) -> str:
    """The lighting slice of a frame by its mean brightness (fixed bounds: frames of a live fleet have no test set
    to take terciles of); '' when unknown."""
    if brightness is None:
        return ""
    for name, upper in LIGHTING_BINS:
        if brightness < upper:
            return f"lighting:{name}"
    return ""


@dataclass
class ShadowPart:
    """A telemetry record's shadow part, cleaned, with what the aggregation needs."""

    model_id: int
    latency_ms: float | None
    detections: list[dict]
    matched: int
    live_boxes: int

    @property
    def top_confidence(self) -> float | None:
        return max((d["confidence"] for d in self.detections), default=None)


def shadow_part(part, *, live_detections, classes: list[str]) -> ShadowPart | str:
    """Clean a record's ``shadow`` object; returns the part, or the reason it is not usable (the caller refuses)."""
    if not isinstance(part, dict):
        return "must be an object"
    model_id = part.get("model_id")
    if isinstance(model_id, bool) or not isinstance(model_id, int):
        return "model_id must be an integer"
    latency = part.get("latency_ms")
    if latency is not None:
        latency = finite_number(latency)
        if latency is None or latency < 0:
            return "latency_ms must be a non-negative number"
    detections = detections_clean(part.get("detections") or [], classes=classes)
    if detections is None:
        return "detections must be a list"
    live = detections_clean(live_detections or [], classes=classes) or []
    return ShadowPart(model_id, latency, detections, len(matched_pairs(live, detections)), len(live))


# --- field numbers ----------------------------------------------------------------------------------------------


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def summarize(totals: dict) -> dict:
    """Rates from summed field counters (``hooks.shadow_field_sums``) (None where nothing was counted)."""
    frames = totals.get("frames") or 0
    return {
        "frames": frames,
        "skipped": totals.get("skipped") or 0,
        "agreement": _ratio(totals.get("agree_frames") or 0, frames),
        "box_agreement": _ratio(
            2 * (totals.get("matched_boxes") or 0), (totals.get("live_boxes") or 0) + (totals.get("shadow_boxes") or 0)
        ),
        "live": {
            "detection_rate": _ratio(totals.get("live_frames_with_detection") or 0, frames),
            "confidence": _ratio(totals.get("live_confidence_sum") or 0, totals.get("live_confidence_count")),
            "latency_ms": _ratio(totals.get("live_latency_sum_ms") or 0, totals.get("live_latency_count")),
        },
        "shadow": {
            "detection_rate": _ratio(totals.get("shadow_frames_with_detection") or 0, frames),
            "confidence": _ratio(totals.get("shadow_confidence_sum") or 0, totals.get("shadow_confidence_count")),
            "latency_ms": _ratio(totals.get("shadow_latency_sum_ms") or 0, totals.get("shadow_latency_count")),
        },
    }


def comparison(shadow_model_id: int, *, live_model_id: int | None = None) -> dict:
    """The shadow model beside the live one(s) it ran with: fleet, per robot, per lighting slice, per hour."""
    from apps.deployments.models import Robot

    def sums(by=None):
        return hooks.shadow_field_sums(shadow_model_id, live_model_id=live_model_id, by=by)

    overall = summarize(sums()[0])
    names = dict(Robot.objects.values_list("id", "name"))
    serials = dict(Robot.objects.values_list("id", "serial"))
    per_robot = [
        {"robot_id": r["robot"], "robot": names.get(r["robot"]) or serials.get(r["robot"]), **summarize(r)}
        for r in sums("robot")
    ]
    per_slice = [{"slice": r["slice"], **summarize(r)} for r in sums("slice")]
    series = [{"hour": r["hour"].isoformat().replace("+00:00", "Z"), **summarize(r)} for r in sums("hour")]
    return {"overall": overall, "per_robot": per_robot, "per_slice": per_slice, "series": series}


def disagreement_images(dataset, shadow_model_id: int, *, limit: int = 24) -> list[Image]:
    """The frames robots uploaded because this shadow model disagreed with their model, most disagreeing first."""
    images = Image.objects.filter(
        dataset=dataset, source=Image.Source.SHADOW_DISAGREEMENT, meta__shadow__model_id=shadow_model_id
    ).select_related("annotation")
    return sorted(images[:500], key=lambda image: -(finite_number(image.meta.get("disagreement")) or 0))[:limit]


def _precision_recall(predicted: list[dict], truth: list[dict]) -> tuple[int, int, int]:
    """(true positives, predicted boxes, true boxes) at IoU 0.5."""
    return len(matched_pairs(truth, predicted)), len(predicted), len(truth)


def _scores(tp: int, predicted: int, truth: int) -> dict:
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, truth)
    f1 = _ratio(2 * tp, predicted + truth)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "predicted": predicted, "truth": truth}


def field_scores(dataset, shadow_model_id: int) -> dict:
    """Precision, recall and F1 (IoU 0.5) of both models on the approved disagreement frames, from the boxes each
    model gave on that frame (kept in the image's meta when the robot uploaded it) against the people's boxes."""
    images = Image.objects.filter(
        dataset=dataset,
        source=Image.Source.SHADOW_DISAGREEMENT,
        status=Image.Status.APPROVED,
        meta__shadow__model_id=shadow_model_id,
    ).select_related("annotation")
    classes = list(dataset.classes)
    live = [0, 0, 0]
    shadow = [0, 0, 0]
    labelled = 0
    for image in images:
        annotation = getattr(image, "annotation", None)
        truth = [
            {"label": classes[b["class_id"]], "box": b["box"]}
            for b in (annotation.boxes if annotation else [])
            if 0 <= b.get("class_id", -1) < len(classes)
        ]
        meta = image.meta or {}
        live_boxes = detections_clean(meta.get("predictions") or [], classes=classes) or []
        shadow_boxes = detections_clean((meta.get("shadow") or {}).get("predictions") or [], classes=classes) or []
        for total, boxes in ((live, live_boxes), (shadow, shadow_boxes)):
            for k, value in enumerate(_precision_recall(boxes, truth)):
                total[k] += value
        labelled += 1
    return {"labelled": labelled, "live": _scores(*live), "shadow": _scores(*shadow)}


def gallery(dataset, shadow_model_id: int, *, limit: int = 24) -> list[dict]:
    """Disagreement frames with both models' boxes (and the people's, once labelled) for the page's gallery."""
    classes = list(dataset.classes)
    result = []
    for image in disagreement_images(dataset, shadow_model_id, limit=limit):
        meta = image.meta or {}
        annotation = getattr(image, "annotation", None)
        result.append(
            {
                "id": image.pk,
                "width": image.width,
                "height": image.height,
                "status": image.status,
                "disagreement": finite_number(meta.get("disagreement")),
                "robot": image.robot_serial,
                "live": detections_clean(meta.get("predictions") or [], classes=classes) or [],
                "shadow": detections_clean((meta.get("shadow") or {}).get("predictions") or [], classes=classes) or [],
                "truth": [
                    {"label": classes[b["class_id"]] if 0 <= b["class_id"] < len(classes) else "?", "box": b["box"]}
                    for b in (annotation.boxes if annotation and image.status == Image.Status.APPROVED else [])
                ],
            }
        )
    return result


# --- the gate ---------------------------------------------------------------------------------------------------


def shadow_check(*, model, live_model, policy) -> tuple[bool, list[str], dict]:
    """Apply the policy's shadow bounds to ``model``'s shadow evidence beside ``live_model``.

    Returns (passed, reasons, evidence). With ``shadow_min_frames`` 0 the evidence is listed but not required."""
    required = policy.shadow_min_frames > 0
    rules = {
        "min_frames": policy.shadow_min_frames,
        "max_detection_rate_drop": policy.shadow_max_detection_rate_drop,
        "min_agreement": policy.shadow_min_agreement,
        "max_latency_increase": policy.shadow_max_latency_increase,
        "min_labelled": policy.shadow_min_labelled,
        "max_field_f1_drop": policy.shadow_max_field_f1_drop,
    }
    numbers = summarize(hooks.shadow_field_sums(model.pk, live_model_id=live_model.pk if live_model else None)[0])
    field = field_scores(model.dataset, model.pk)
    evidence = {
        "required": required,
        "live_model_id": live_model.pk if live_model else None,
        "policy": rules,
        "numbers": numbers,
        "field": field,
    }
    reasons: list[str] = []
    failed = False
    if not required and not numbers["frames"]:
        return True, [], evidence
    frames = numbers["frames"]
    if frames < policy.shadow_min_frames:
        failed = True
        reasons.append(
            f"Shadow: {frames} frame(s) seen beside the live model, the policy needs {policy.shadow_min_frames}."
        )
    elif frames:
        live, shadow = numbers["live"], numbers["shadow"]
        drop = (live["detection_rate"] or 0) - (shadow["detection_rate"] or 0)
        ok = drop <= policy.shadow_max_detection_rate_drop + 1e-9
        failed |= not ok
        reasons.append(
            f"Shadow: detection rate {shadow['detection_rate']:.1%} against the live model's "
            f"{live['detection_rate']:.1%} on {frames} frames ({'within' if ok else 'beyond'} the allowed drop of "
            f"{policy.shadow_max_detection_rate_drop:.1%})."
        )
        agreement = numbers["agreement"] or 0
        ok = agreement + 1e-9 >= policy.shadow_min_agreement
        failed |= not ok
        reasons.append(
            f"Shadow: the two models agree on {agreement:.1%} of frames "
            f"(the policy needs {policy.shadow_min_agreement:.1%})."
        )
        if live["latency_ms"] and shadow["latency_ms"] is not None:
            increase = shadow["latency_ms"] / live["latency_ms"] - 1
            ok = increase <= policy.shadow_max_latency_increase + 1e-9
            failed |= not ok
            reasons.append(
                f"Shadow: latency {shadow['latency_ms']:.1f} ms against {live['latency_ms']:.1f} ms "
                f"({increase:+.0%}; at most {policy.shadow_max_latency_increase:+.0%} allowed)."
            )
    if field["labelled"] >= max(policy.shadow_min_labelled, 1):
        live_f1, shadow_f1 = field["live"]["f1"] or 0.0, field["shadow"]["f1"] or 0.0
        ok = shadow_f1 + policy.shadow_max_field_f1_drop + 1e-9 >= live_f1
        failed |= not ok
        reasons.append(
            f"Shadow: on {field['labelled']} labelled disagreement frame(s) the candidate's F1 is {shadow_f1:.2f} "
            f"against the live model's {live_f1:.2f} ({'not worse' if ok else 'worse'} than allowed)."
        )
    elif field["labelled"]:
        reasons.append(
            f"Shadow: {field['labelled']} labelled disagreement frame(s); the field comparison is gated from "
            f"{policy.shadow_min_labelled}."
        )
    # Without a required minimum the evidence is shown beside the offline verdict but does not decide it.
    return (not failed) or not required, reasons, evidence
