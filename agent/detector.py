"""Object detection with onnxruntime on an ultralytics YOLOv8 detect ONNX export, without ultralytics.

Matches ultralytics' own pipeline for such a model: letterbox to the model's square input (grey 114 padding,
centred), RGB in [0, 1], output ``(1, 4 + nc, N)`` decoded as centre x, centre y, width, height plus per-class
scores, confidence filter, per-class NMS (IoU 0.7, at most 300 boxes), boxes scaled back to the original pixels.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PAD_VALUE = 114


class ModelLoadFailed(Exception):
    """The ONNX file could not be loaded or run."""


@dataclass
class Detection:
    """One detected object; ``box`` is ``[x, y, w, h]`` in pixels of the original image."""

    label: str
    confidence: float
    box: list[float]
    class_id: int = 0

    def as_json(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 4), "box": [round(v, 1) for v in self.box]}


def resize_bilinear(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize with OpenCV's INTER_LINEAR sampling (half-pixel centres, no antialiasing), as ultralytics
    resizes; Pillow's bilinear filter antialiases when shrinking and would shift the model's inputs."""
    src_h, src_w = pixels.shape[:2]

    def axis(dst: int, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).clip(0, None)
        low = np.minimum(np.floor(pos).astype(np.int64), src - 1)
        high = np.minimum(low + 1, src - 1)
        return low, high, (pos - low).clip(0, 1).astype(np.float32)

    x0, x1, fx = axis(width, src_w)
    y0, y1, fy = axis(height, src_h)
    data = pixels.astype(np.float32)
    top = data[y0][:, x0] * (1 - fx)[None, :, None] + data[y0][:, x1] * fx[None, :, None]
    bottom = data[y1][:, x0] * (1 - fx)[None, :, None] + data[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]
    return np.rint(out).clip(0, 255).astype(np.uint8)


def letterbox(image: Image.Image, size: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """Resize keeping the aspect ratio and pad to ``size`` (h, w), centred, like ultralytics' LetterBox.

    Returns the HWC uint8 RGB array, the (x, y) scale actually applied and the (left, top) padding.
    """
    height, width = size
    ratio = min(height / image.height, width / image.width)
    new_w, new_h = max(round(image.width * ratio), 1), max(round(image.height * ratio), 1)
    pixels = np.asarray(image.convert("RGB"))
    if (new_w, new_h) != image.size:
        pixels = resize_bilinear(pixels, new_w, new_h)
    top, left = round((height - new_h) / 2 - 0.1), round((width - new_w) / 2 - 0.1)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = pixels
    return canvas, (new_w / image.width, new_h / image.height), (left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression; ``boxes`` are ``x1, y1, x2, y2``."""
    order = scores.argsort()[::-1]
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx2 - xx1).clip(0) * (yy2 - yy1).clip(0)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(
    output: np.ndarray, *, conf: float, iou: float = 0.7, max_det: int = 300, max_wh: float = 7680.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLOv8 raw output ``(1, 4 + nc, N)`` → (boxes xyxy in model input pixels, scores, class ids) after NMS."""
    predictions = output[0].T  # (N, 4 + nc)
    class_scores = predictions[:, 4:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    mask = scores > conf
    xywh, scores, class_ids = predictions[mask, :4], scores[mask], class_ids[mask]
    boxes = np.empty_like(xywh)
    boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    if len(scores) > 30000:  # ultralytics' max_nms: only the best candidates enter NMS
        top = scores.argsort()[::-1][:30000]
        boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
    # Offsetting boxes by class keeps NMS per class in one pass (as ultralytics does).
    keep = nms(boxes + (class_ids * max_wh)[:, None], scores, iou)[:max_det]
    return boxes[keep], scores[keep], class_ids[keep]


class Detector:
    """An ONNX detection model ready to run; raises ``ModelLoadFailed`` if the file is not a usable model."""

    def __init__(self, path: str | Path, classes: list[str] | None = None, *, imgsz: int = 640, iou: float = 0.7):
        import onnxruntime as ort  # imported here so the rest of the agent loads without it

        self.path = Path(path)
        self.iou = iou
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            # No spinning after a run: the live and the shadow model run back to back on the same cores, and one
            # session's threads spinning for work would slow the other one down (and burn the robot's CPU).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            model_input = self.session.get_inputs()[0]
            self.input_name = model_input.name
            shape = model_input.shape
            height = shape[2] if isinstance(shape[2], int) else imgsz
            width = shape[3] if isinstance(shape[3], int) else imgsz
            self.input_size = (int(height), int(width))
            # One dry run: a model that loads but cannot run is as unusable as one that doesn't load.
            dummy = np.zeros((1, 3, *self.input_size), dtype=np.float32)
            output = self.session.run(None, {self.input_name: dummy})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise ModelLoadFailed(f"{self.path.name}: {exc}") from exc
        if output.ndim != 3 or output.shape[1] < 5:
            raise ModelLoadFailed(f"{self.path.name}: output shape {output.shape} is not (1, 4 + classes, N)")
        self.num_classes = output.shape[1] - 4
        self.classes = list(classes or [])[: self.num_classes] or [str(i) for i in range(self.num_classes)]
        while len(self.classes) < self.num_classes:
            self.classes.append(str(len(self.classes)))

    def warm_up(self, runs: int = 3) -> None:
        """Run the model a few times on a blank frame, so the first frames measured are not its cold start."""
        dummy = np.zeros((1, 3, *self.input_size), dtype=np.float32)
        for _ in range(runs):
            self.session.run(None, {self.input_name: dummy})

    def preprocess(self, image: Image.Image) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
        canvas, gain, pad = letterbox(image, self.input_size)
        tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return np.ascontiguousarray(tensor), gain, pad

    def detect(self, image: Image.Image, conf: float = 0.25) -> list[Detection]:
        """Detections above ``conf``, best first, boxes in the original image's pixels."""
        tensor, (gain_x, gain_y), (left, top) = self.preprocess(image)
        output = self.session.run(None, {self.input_name: tensor})[0]
        boxes, scores, class_ids = decode(output, conf=conf, iou=self.iou)
        boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left) / gain_x).clip(0, image.width)
        boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top) / gain_y).clip(0, image.height)
        detections = []
        for (x1, y1, x2, y2), score, class_id in zip(boxes.tolist(), scores.tolist(), class_ids.tolist(), strict=True):
            label = self.classes[class_id]
            detections.append(Detection(label, float(score), [x1, y1, x2 - x1, y2 - y1], int(class_id)))
        return detections
