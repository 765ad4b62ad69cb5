"""Real evaluation with ultralytics' validator: metrics, slices, reuse by test-set hash, leakage, the gate on it."""

import io
import random
from pathlib import Path

import pytest

from apps.datasets.models import DatasetVersion, VersionItem
from apps.deployments import evaluation as ev
from apps.deployments import services
from apps.deployments.models import Evaluation, PromotionPolicy
from apps.training.models import TrainingRun
from tests.builders import make_model, stored_image_row
from vectorsim.scenes import render_scene

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def _test_images(dataset, count=24):
    images = []
    for i in range(count):
        images.append(
            stored_image_row(
                dataset,
                seed=1000 + i,
                brightness=(0.45, 1.0, 1.5)[i % 3],
                robot=("00aa", "00bb")[i % 2],
                source=("camera", "feedback")[(i // 2) % 2],
            )
        )
    return images


def _subset_list(root: Path, items: list, indices: list[int], name: str) -> str:
    """A text file listing some test images (ultralytics accepts such a list as a split)."""
    lines = []
    for index in indices:
        item = items[index]
        ext = Path(item.storage_path).suffix or ".jpg"
        lines.append(str(root / "images" / "test" / f"{item.sha256}{ext}"))
    (root / name).write_text("\n".join(lines) + "\n")
    return name


def test_evaluation_runs_ultralytics_and_reports_overall_per_class_and_slices(dataset, tiny_weights, tmp_path):
    _test_images(dataset)
    model = make_model(dataset, 1, pt=tiny_weights)

    evaluation = services.model_evaluate(model=model)

    metrics = evaluation.metrics
    assert evaluation.image_count == 24
    assert set(metrics["overall"]) == {"precision", "recall", "map50", "map50_95"}
    assert set(metrics["slices"]) == {"lighting", "robot", "source"}
    assert set(metrics["slices"]["lighting"]) == {"dark", "normal", "bright"}
    assert sum(s["images"] for s in metrics["slices"]["lighting"].values()) == 24
    assert set(metrics["slices"]["robot"]) == {"00aa", "00bb"}
    assert set(metrics["slices"]["source"]) == {"camera", "feedback"}
    # Dark slice = the darkest tercile of this test set.
    items = ev.current_test_set(dataset)
    dark = ev.slices_of(items)["lighting"]["dark"]
    assert max(items[i].brightness for i in dark) < min(
        items[i].brightness for i in ev.slices_of(items)["lighting"]["bright"]
    )

    # The per-image statistics reproduce the validator's own headline numbers ...
    stats = ev.load_stats(evaluation.stats_path)
    assert len(stats.conf) == 24
    whole = ev.subset_metrics(stats, range(24), list(dataset.classes))
    for key in ("map50", "map50_95"):
        assert whole[key] == pytest.approx(metrics["overall"][key], abs=1e-6)
    # ... and a slice's numbers equal a real ultralytics val run on that slice alone.
    root = tmp_path / "slice"
    ev.materialise_test_set(items, list(dataset.classes), root)
    listing = _subset_list(root, items, dark, "dark.txt")
    data_yaml = ev.write_data_yaml(root, listing, list(dataset.classes), name="dark.yaml")
    weights = ev.local_weights(model, tmp_path)
    on_slice, _ = ev.run_validator(weights, data_yaml, imgsz=64, workdir=tmp_path)
    for key in ("map50", "map50_95", "precision", "recall"):
        assert metrics["slices"]["lighting"]["dark"][key] == pytest.approx(on_slice["overall"][key], abs=1e-6)


def test_stored_evaluation_is_reused_while_the_test_set_hash_matches(dataset, tiny_weights):
    images = _test_images(dataset, 6)
    model = make_model(dataset, 1, pt=tiny_weights)
    first = services.model_evaluate(model=model)
    again = services.model_evaluate(model=model)
    assert again.pk == first.pk

    # A changed box is a different test set: a new evaluation.
    annotation = images[0].annotation
    annotation.boxes = [{"class_id": 0, "box": [1, 1, 10, 10]}]
    annotation.save()
    changed = services.model_evaluate(model=model)
    assert changed.pk != first.pk
    assert changed.test_set_sha256 != first.test_set_sha256
    assert Evaluation.objects.filter(model=model).count() == 2


def test_gate_on_a_real_evaluation_reports_leakage_and_the_bootstrap_interval(dataset, tiny_weights):
    test_images = _test_images(dataset, 20)
    # The candidate's training version contains a re-encoded copy of a test image: a near-duplicate.
    scene, boxes = render_scene(random.Random(1000), 64, 64, brightness=0.45, robots=1)  # test image 0's scene
    buffer = io.BytesIO()
    scene.save(buffer, format="JPEG", quality=60)
    leaked = stored_image_row(dataset, seed=0, split="train", data=buffer.getvalue(), boxes=boxes)
    version = DatasetVersion.objects.create(dataset=dataset, number=1, classes=["vector"], manifest_sha256="x" * 64)
    VersionItem.objects.create(version=version, image=leaked, split="train", boxes=[])
    for i in range(3):
        VersionItem.objects.create(
            version=version, image=stored_image_row(dataset, seed=5000 + i, split="train"), split="train", boxes=[]
        )
    run = TrainingRun.objects.create(dataset=dataset, dataset_version=version, base="yolov8n.yaml")
    PromotionPolicy.objects.create(dataset=dataset, min_map50=0.0, min_test_images=20, max_slice_drop=1.0)

    production = make_model(dataset, 1, pt=tiny_weights)
    services.model_promote(model=production, channel="production", reason="first")
    candidate = make_model(dataset, 2, pt=tiny_weights, run=run)

    decision = services.model_gate(model=candidate)

    assert decision.production_id == production.pk
    assert decision.candidate_evaluation.test_set_sha256 == decision.production_evaluation.test_set_sha256
    pairs = decision.near_duplicates["pairs"]
    assert decision.near_duplicates["checked"] is True
    assert [p["test_image_id"] for p in pairs] == [test_images[0].pk]
    assert any("near-duplicate" in reason for reason in decision.reasons)
    # Same weights: no difference, and the interval is a real interval around it.
    assert decision.map_diff == pytest.approx(0.0, abs=1e-9)
    low, high = decision.map_diff_ci
    assert low <= 0.0 <= high
    assert decision.passed  # gain 0 >= min_gain 0, no slice dropped
    assert set(decision.comparison["slices"]["lighting"]) == {"dark", "normal", "bright"}
