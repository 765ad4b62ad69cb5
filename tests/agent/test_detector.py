"""Decoding a YOLOv8 ONNX output: letterbox, confidence filter, NMS, boxes back in original pixels."""

import numpy as np
import pytest
from PIL import Image

from agent.detector import Detector, ModelLoadFailed, decode, letterbox, nms
from tests.agent.fakes import constant_detector


def test_letterbox_pads_grey_and_centres():
    image = Image.new("RGB", (128, 64), (255, 0, 0))
    canvas, gain, (left, top) = letterbox(image, (64, 64))
    assert gain == (0.5, 0.5) and (left, top) == (0, 16)
    assert tuple(canvas[0, 0]) == (114, 114, 114)
    assert tuple(canvas[32, 32]) == (255, 0, 0)
    assert tuple(canvas[63, 63]) == (114, 114, 114)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]


def test_decode_filters_by_confidence_and_suppresses_per_class():
    # Two classes; three candidates: two overlapping of different classes (both kept), one below threshold.
    output = np.zeros((1, 6, 3), dtype=np.float32)
    output[0, :, 0] = [50, 50, 20, 20, 0.9, 0.1]
    output[0, :, 1] = [51, 50, 20, 20, 0.1, 0.8]
    output[0, :, 2] = [10, 10, 5, 5, 0.2, 0.1]
    boxes, scores, classes = decode(output, conf=0.25)
    assert classes.tolist() == [0, 1]
    assert scores.tolist() == pytest.approx([0.9, 0.8])
    assert boxes[0].tolist() == pytest.approx([40, 40, 60, 60])


def test_detector_maps_boxes_back_to_original_pixels(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(constant_detector([(32, 32, 16, 16, 0.9), (33, 32, 16, 16, 0.8), (5, 30, 4, 4, 0.1)]))
    detector = Detector(path, ["vector"])
    detections = detector.detect(Image.new("RGB", (128, 72)), conf=0.25)
    # 128x72 → 64x36 (gain 0.5) padded 14 px at the top: (24..40, 24..40) → x 48..80, y 20..52.
    assert len(detections) == 1
    assert detections[0].label == "vector"
    assert detections[0].confidence == pytest.approx(0.9)
    assert detections[0].box == pytest.approx([48, 20, 32, 32])


def test_garbage_is_not_a_model(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelLoadFailed):
        Detector(path)
