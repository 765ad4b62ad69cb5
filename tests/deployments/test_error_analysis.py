"""What a model gets wrong comes from one ultralytics validation, stored with the evaluation: its confusion matrix,
per-class AP and curves equal those of ultralytics' own `val` on the same model and frozen test set."""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from apps.deployments import evaluation as ev
from apps.deployments import selectors, services
from apps.deployments.models import Evaluation
from tests.builders import gate_decision_row, make_model, stored_image_row

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
        # Its confusion matrix at the stated conf: val run at that conf counts exactly the predictions above it.
        own_at_conf = YOLO(str(weights), task="detect").val(
            data=str(data_yaml), split="test", imgsz=model.imgsz, batch=16, plots=True, workers=0, verbose=False,
            project=str(Path(tmp) / "runs"), name="val-conf", conf=ev.ANALYSIS_CONF,
        )  # fmt: skip
    assert analysis["confusion_conf"] == ev.ANALYSIS_CONF
    assert analysis["confusion_matrix"] == own_at_conf.confusion_matrix.matrix.round().astype(int).tolist()
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


def test_confusion_matrix_counts_the_false_positives_the_error_viewer_shows_at_its_conf(dataset, tiny_weights):
    """Issue 12: at val's own conf (0.001) the matrix showed ~177 false positives on 3 images beside none in the
    error viewer. Counted at one stated conf, both count the same predictions (one class: the matrix's class-agnostic
    matching is the validator's)."""
    for i in range(12):
        stored_image_row(dataset, seed=7100 + i, brightness=(0.45, 1.0, 1.5)[i % 3])
    model = make_model(dataset, 1, pt=tiny_weights)
    evaluation = services.model_evaluate(model=model)
    decision = gate_decision_row(model, None, candidate_evaluation=evaluation)

    analysis = selectors.gate_analysis(decision)["candidate"]
    viewer = [row["candidate"] for row in selectors.error_viewer_images(decision, conf=ev.ANALYSIS_CONF)]

    assert analysis["confusion_conf"] == ev.ANALYSIS_CONF
    matrix = np.asarray(analysis["confusion_matrix"])
    predicted = matrix[:-1].sum()  # every prediction above the conf is counted once, in the row of its class
    assert predicted == sum(len(row["boxes"]) for row in viewer)
    assert matrix[:-1, -1].sum() == sum(row["fp"] for row in viewer)  # predicted "vector", truly background
    assert matrix[-1, :-1].sum() == sum(row["missed"] for row in viewer)  # true "vector", predicted background
    confidences = np.concatenate(ev.load_stats(evaluation.stats_path).conf)
    assert predicted == (confidences > ev.ANALYSIS_CONF).sum()
    # The barely trained model's many low-confidence boxes, which val's own conf would have put in the matrix.
    assert (confidences > ev.VALIDATOR_CONF).sum() > predicted


def test_confusion_matrix_is_counted_at_the_conf_it_is_given(dataset, tiny_weights):
    for i in range(6):
        stored_image_row(dataset, seed=7200 + i)
    model = make_model(dataset, 1, pt=tiny_weights)
    items = ev.current_test_set(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        data_yaml = ev.materialise_test_set(items, list(dataset.classes), Path(tmp) / "data")
        weights = Path(tmp) / "model.pt"
        weights.write_bytes(tiny_weights)
        headline, per_image = ev.run_validator(
            weights, data_yaml, imgsz=model.imgsz, workdir=Path(tmp), matrix_conf=ev.VALIDATOR_CONF
        )
    matrix = np.asarray(headline["analysis"]["confusion_matrix"])
    confidences = np.concatenate([stats[1] for stats in per_image.values()])
    assert headline["analysis"]["confusion_conf"] == ev.VALIDATOR_CONF
    assert matrix[:-1].sum() == (confidences > ev.VALIDATOR_CONF).sum() > 0


def test_analyses_stored_before_the_matrix_had_its_conf_say_they_were_counted_at_the_validators(dataset):
    model = make_model(dataset, 1)
    evaluation = Evaluation.objects.create(
        model=model,
        dataset=dataset,
        test_set_sha256="0" * 64,
        image_count=1,
        metrics={"analysis": {"names": ["vector"], "confusion_matrix": [[1]]}},
    )
    decision = gate_decision_row(model, None, candidate_evaluation=evaluation)
    assert selectors.gate_analysis(decision) == {
        "candidate": {"names": ["vector"], "confusion_matrix": [[1]], "confusion_conf": ev.VALIDATOR_CONF},
        "production": None,
    }
