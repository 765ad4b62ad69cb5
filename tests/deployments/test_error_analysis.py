"""What a model gets wrong comes from one ultralytics validation, stored with the evaluation: its confusion matrix,
per-class AP and curves equal those of ultralytics' own `val` on the same model and frozen test set."""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from apps.deployments import evaluation as ev
from apps.deployments import services
from tests.builders import make_model, stored_image_row

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_stored_analysis_equals_ultralytics_own_val(dataset, tiny_weights):
    for i in range(12):
        stored_image_row(dataset, seed=7000 + i, brightness=(0.45, 1.0, 1.5)[i % 3])
    model = make_model(dataset, 1, pt=tiny_weights)
    analysis = services.model_evaluate(model=model).metrics["analysis"]

    # ultralytics' own val on the same weights and the same frozen test set, with its plots on (files only).
    from ultralytics import YOLO

    items = ev.current_test_set(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        data_yaml = ev.materialise_test_set(items, list(dataset.classes), Path(tmp) / "data")
        weights = Path(tmp) / "model.pt"
        weights.write_bytes(tiny_weights)
        own = YOLO(str(weights), task="detect").val(
            data=str(data_yaml), split="test", imgsz=model.imgsz, batch=16, plots=True, workers=0, verbose=False,
            project=str(Path(tmp) / "runs"), name="val",
        )  # fmt: skip
    assert analysis["confusion_matrix"] == own.confusion_matrix.matrix.round().astype(int).tolist()
    assert analysis["ap50_95"] == pytest.approx([float(v) for v in own.box.ap])
    assert analysis["ap50"] == pytest.approx([float(v) for v in own.box.ap50])
    assert analysis["ap_classes"] == [own.names[int(c)] for c in own.box.ap_class_index]
    # The matrix counts every ground-truth box once, in its true class's column (the last row: missed).
    matrix = np.asarray(analysis["confusion_matrix"])
    boxes = sum(len(item.boxes) for item in items)
    assert matrix[:, 0].sum() == boxes and matrix.shape == (2, 2)
    assert len(analysis["curve_x"]) == ev.CURVE_POINTS and len(analysis["pr"]["vector"]) == ev.CURVE_POINTS
    # Each image's predictions as the validator matched them (boxes in pixels of the original image).
    predictions = analysis["predictions"]
    assert set(predictions) <= {item.sha256 for item in items}
    for item in items:
        rows = predictions.get(item.sha256, [])
        assert all(len(row) == 7 and row[5] >= ev.PREDICTION_MIN_CONF for row in rows)
        assert sum(row[6] for row in rows) <= len(item.boxes)  # a ground-truth box is matched at most once
        assert all(0 <= row[0] <= item.width and 0 <= row[1] <= item.height for row in rows)
