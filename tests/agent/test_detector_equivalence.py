"""The agent's onnxruntime decoding gives the detections ultralytics gives for the same ONNX file.

ultralytics is imported here, in the test only: the agent itself never imports it.
"""

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.detector import Detector
from vectorsim.scenes import render_scene

pytestmark = pytest.mark.slow

IMGSZ = 96


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A yolov8n trained from its yaml for one epoch on a few generated 96x64 scenes, exported to ONNX."""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("tiny-yolo")
    rng = random.Random(7)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(8):
            image, boxes = render_scene(rng, 96, 64, robots=1)
            image.save(root / "images" / split / f"{i}.jpg")
            lines = [f"0 {(x + w / 2) / 96} {(y + h / 2) / 64} {w / 96} {h / 64}" for x, y, w, h in boxes]
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines))
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: vector\n")
    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(data), epochs=1, imgsz=IMGSZ, batch=8, workers=0, plots=False, device="cpu",
        project=str(root / "runs"), name="t", verbose=False, amp=False, val=False,
    )  # fmt: skip
    return model.export(format="onnx", imgsz=IMGSZ, dynamic=False, simplify=False)


@pytest.fixture(scope="module")
def shrunk_onnx(tiny_onnx):
    """The same ONNX with its box widths and heights scaled by 0.05.

    A barely trained model predicts boxes larger than the image, which clipping hides; smaller boxes spread over
    the anchors make the letterbox scale and padding (and NMS) visible in the comparison. Both sides read the
    same file, so it is still a test of decoding, not of the model.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(tiny_onnx)
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["raw_" + name if name == out else name for name in node.output]
    classes = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value - 4
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([2, 2, classes], dtype=np.int64), "split_sizes"),
            numpy_helper.from_array(np.array(0.05, dtype=np.float32), "shrink"),
        ]
    )
    model.graph.node.extend(
        [
            helper.make_node("Split", ["raw_" + out, "split_sizes"], ["xy", "wh", "cls"], axis=1),
            helper.make_node("Mul", ["wh", "shrink"], ["wh_small"]),
            helper.make_node("Concat", ["xy", "wh_small", "cls"], [out], axis=1),
        ]
    )
    onnx.checker.check_model(model)
    path = str(Path(tiny_onnx).with_name("shrunk.onnx"))
    onnx.save(model, path)
    return path


def _ultralytics_boxes(onnx_path, image: Image.Image, conf: float):
    from ultralytics import YOLO

    result = YOLO(onnx_path, task="detect").predict(
        np.asarray(image)[:, :, ::-1], imgsz=IMGSZ, conf=conf, iou=0.7, verbose=False, device="cpu"
    )[0]  # ultralytics takes numpy images as BGR
    xyxy = result.boxes.xyxy.cpu().numpy()
    return xyxy, result.boxes.conf.cpu().numpy()


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("variant", ["trained", "shrunk"])
@pytest.mark.parametrize("size", [(96, 64), (640, 360), (200, 300)])
def test_same_detections_as_ultralytics(request, variant, size):
    onnx_path = request.getfixturevalue("tiny_onnx" if variant == "trained" else "shrunk_onnx")
    image, _ = render_scene(random.Random(size[0]), *size, robots=1)
    conf = 0.001  # an untrained model is unsure of everything: compare its best guesses
    ours = Detector(onnx_path, ["vector"]).detect(image, conf=conf)
    theirs_xyxy, theirs_conf = _ultralytics_boxes(onnx_path, image, conf)
    assert len(ours) > 0 and len(theirs_conf) > 0
    top = sorted(ours, key=lambda d: -d.confidence)[:20]
    for detection in top:
        x, y, w, h = detection.box
        box = (x, y, x + w, y + h)
        # The same box (an untrained model repeats boxes, e.g. the whole image): the closest confidence among them.
        # Boxes clipped to nothing at an image edge have no IoU: those must match coordinate by coordinate.
        same = [
            i
            for i in range(len(theirs_conf))
            if _iou(box, theirs_xyxy[i]) > 0.9 or np.abs(np.asarray(box) - theirs_xyxy[i]).max() < 1.0
        ]
        assert same, (detection, theirs_xyxy)
        best = min(same, key=lambda i: abs(detection.confidence - theirs_conf[i]))
        assert abs(detection.confidence - theirs_conf[best]) <= 0.05 * theirs_conf[best] + 1e-4
    # Roughly the same number of boxes survive filtering and NMS.
    assert abs(len(ours) - len(theirs_conf)) <= max(3, 0.1 * len(theirs_conf))
