"""Unbiased evaluation of a model on a dataset's current test split, with ultralytics' own validator.

How metrics are computed (and why):
- The whole test set is validated once per model with ``YOLO(pt).val(data=..., split="test")``; mAP50, mAP50-95,
  precision, recall and per-class AP come from that run as ultralytics reports them.
- While it runs we keep the validator's per-image matched statistics (true-positive matrix over the ten IoU
  thresholds, confidences, predicted and true classes: exactly what it feeds ``ap_per_class``). A slice's metrics
  are ``ap_per_class`` over the slice's images: the same computation ``val`` would run on that subset, since the
  matching is per image (checked in tests against a real ``val`` on a slice), at the cost of one forward pass.
- The bootstrap interval of the mAP50-95 difference resamples test images with replacement (paired: the same
  resample for both models) and re-runs ``ap_per_class`` on the resampled statistics. Nothing here computes AP by
  hand: torchmetrics is not installed, and ultralytics' function is what produced the headline numbers anyway.
"""

import hashlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.datasets.services.layout import yolo_data_yaml_write, yolo_image_write
from apps.datasets.storage import place_stored_file

log = logging.getLogger(__name__)

LIGHTING = ("dark", "normal", "bright")
BOOTSTRAP_SAMPLES = 500


@dataclass
class TestItem:
    """One test image as evaluation needs it."""

    image_id: int
    sha256: str
    storage_path: str
    width: int
    height: int
    boxes: list  # [{"class_id": i, "box": [x, y, w, h]}]
    brightness: float
    robot: str
    source: str
    phash: str


@dataclass
class PerImageStats:
    """The validator's matched statistics, image by image, in test-set order."""

    tp: list = field(default_factory=list)  # (n_pred, 10) bool per image
    conf: list = field(default_factory=list)
    pred_cls: list = field(default_factory=list)
    target_cls: list = field(default_factory=list)

    def save_bytes(self) -> bytes:
        counts_pred = np.array([len(c) for c in self.conf], dtype=np.int64)
        counts_target = np.array([len(t) for t in self.target_cls], dtype=np.int64)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            tp=np.concatenate(self.tp).astype(bool) if self.tp else np.zeros((0, 10), bool),
            conf=np.concatenate(self.conf).astype(np.float32) if self.conf else np.zeros(0),
            pred_cls=np.concatenate(self.pred_cls).astype(np.int32) if self.pred_cls else np.zeros(0),
            target_cls=np.concatenate(self.target_cls).astype(np.int32) if self.target_cls else np.zeros(0),
            counts_pred=counts_pred,
            counts_target=counts_target,
        )
        return buffer.getvalue()

    @classmethod
    def load_bytes(cls, data: bytes) -> "PerImageStats":
        arrays = np.load(io.BytesIO(data))
        stats = cls()
        p_edges = np.concatenate([[0], np.cumsum(arrays["counts_pred"])])
        t_edges = np.concatenate([[0], np.cumsum(arrays["counts_target"])])
        for i in range(len(arrays["counts_pred"])):
            a, b = p_edges[i], p_edges[i + 1]
            stats.tp.append(arrays["tp"][a:b].reshape(-1, 10))
            stats.conf.append(arrays["conf"][a:b])
            stats.pred_cls.append(arrays["pred_cls"][a:b])
            stats.target_cls.append(arrays["target_cls"][t_edges[i] : t_edges[i + 1]])
        return stats


# --- the test set ---------------------------------------------------------------------------------------------


def current_test_set(dataset) -> list[TestItem]:
    """The dataset's current test split of approved images with their boxes, ordered by sha256."""
    from apps.datasets.models import Image

    rows = (
        Image.objects.filter(dataset=dataset, split=Image.Split.TEST, status=Image.Status.APPROVED)
        .select_related("annotation")
        .order_by("sha256")
    )
    items = []
    for image in rows:
        annotation = getattr(image, "annotation", None)
        items.append(
            TestItem(
                image_id=image.pk,
                sha256=image.sha256,
                storage_path=image.storage_path,
                width=image.width,
                height=image.height,
                boxes=list(annotation.boxes) if annotation else [],
                brightness=image.brightness,
                robot=image.robot_serial or "unknown",
                source=image.source,
                phash=image.phash,
            )
        )
    return items


def test_set_sha256(items: list[TestItem], classes: list[str]) -> str:
    """Identifies a test set: its class names, image list and every box (any change gives a new hash)."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    for item in items:
        boxes = sorted((b["class_id"], *[round(float(v), 2) for v in b["box"]]) for b in item.boxes)
        digest.update(f"{item.sha256}|{boxes}\n".encode())
    return digest.hexdigest()


def slices_of(items: list[TestItem]) -> dict[str, dict[str, list[int]]]:
    """Indices of the test images in each slice: lighting by brightness terciles of this test set, robot, source."""
    result: dict[str, dict[str, list[int]]] = {"lighting": {}, "robot": {}, "source": {}}
    if not items:
        return result
    brightness = np.array([item.brightness for item in items], dtype=float)
    low, high = np.quantile(brightness, [1 / 3, 2 / 3])
    for index, item in enumerate(items):
        light = "dark" if item.brightness <= low else ("bright" if item.brightness > high else "normal")
        result["lighting"].setdefault(light, []).append(index)
        result["robot"].setdefault(item.robot, []).append(index)
        result["source"].setdefault(item.source, []).append(index)
    result["lighting"] = {name: result["lighting"][name] for name in LIGHTING if name in result["lighting"]}
    return result


def materialise_test_set(items: list[TestItem], classes: list[str], root: Path) -> Path:
    """Write the test set in YOLO layout (images/test, labels/test, data.yaml); returns the data.yaml path."""
    for item in items:
        yolo_image_write(
            root=root,
            split="test",
            storage_name=item.storage_path,
            sha256=item.sha256,
            width=item.width,
            height=item.height,
            boxes=item.boxes,
        )
    return write_data_yaml(root, "images/test", classes)


def write_data_yaml(root: Path, test: str, classes: list[str], name: str = "data.yaml") -> Path:
    # ultralytics insists on train and val keys even for a test-only evaluation; they point at the test images.
    return yolo_data_yaml_write(root, classes=classes, train=test, val=test, test=test, name=name)


# --- running the validator ------------------------------------------------------------------------------------


def local_weights(model, workdir: Path) -> Path:
    """A local path to the model's .pt artifact."""
    artifact = model.artifacts.filter(format="pt").first()
    if artifact is None:
        from vectormlops.errors import ValidationFailed

        raise ValidationFailed("The model has no .pt artifact to evaluate.", code="no_pt_artifact")
    target = workdir / f"model-{model.pk}.pt"
    if not target.exists():
        place_stored_file(artifact.storage_path, target, link=True)
    return target


PREDICTION_MIN_CONF = 0.1  # predictions kept per image for the error viewer (the validator keeps down to 0.001)
# The confidence at which the stored confusion matrix counts predictions, and the one the error viewer opens at, so
# that both show the same false positives. The validator's own conf (0.001, which the headline AP needs) would fill the
# matrix with near-zero-confidence boxes no robot ever acts on.
ANALYSIS_CONF = 0.25
VALIDATOR_CONF = 0.001  # ultralytics val's default: every stored analysis without "confusion_conf" was computed at it


def run_validator(
    weights: Path, data_yaml: Path, *, imgsz: int, workdir: Path, matrix_conf: float = ANALYSIS_CONF
) -> tuple[dict, dict[str, tuple]]:
    """Validate with ultralytics; returns the headline metrics (with each image's predictions, matched by the
    validator at IoU 0.5, under "predictions", and its confusion matrix counted at ``matrix_conf``) and the per-image
    matched stats by file stem."""
    from ultralytics import YOLO

    per_image: dict[str, tuple] = {}
    predictions: dict[str, list] = {}

    def capture(validator):
        original = validator.metrics.update_stats
        match = validator._process_batch

        def process_batch(preds, batch):
            # The validator's own matching of this image's predictions, with the boxes in original pixels.
            result = match(preds, batch)
            boxes = validator.scale_preds(preds, batch)["bboxes"].cpu().numpy()
            rows = []
            for box, cls, conf, tp in zip(
                boxes, preds["cls"].cpu().numpy(), preds["conf"].cpu().numpy(), result["tp"][:, 0], strict=True
            ):
                if conf >= PREDICTION_MIN_CONF:
                    x1, y1, x2, y2 = (round(float(v), 1) for v in box)
                    rows.append(
                        [x1, y1, round(x2 - x1, 1), round(y2 - y1, 1), int(cls), round(float(conf), 3), bool(tp)]
                    )
            predictions[Path(batch["im_file"]).stem] = rows
            return result

        validator._process_batch = process_batch
        # plots=True makes ultralytics fill its confusion matrix; its drawings are skipped (they need fonts from the
        # internet and cost time): the page draws the stored numbers.
        validator.plot_val_samples = validator.plot_predictions = lambda *args, **kwargs: None
        process = validator.metrics.process
        validator.metrics.process = lambda save_dir=None, plot=False, on_plot=None: process(save_dir=save_dir)

        def update_stats(stat):
            per_image[Path(stat["im_name"]).stem] = (
                np.asarray(stat["tp"], dtype=bool).reshape(-1, 10),
                np.asarray(stat["conf"], dtype=np.float32),
                np.asarray(stat["pred_cls"], dtype=np.int32),
                np.asarray(stat["target_cls"], dtype=np.int32).reshape(-1),
            )
            original(stat)

        validator.metrics.update_stats = update_stats

    def confusion_matrix_at_conf(validator):
        # The validator hands its matrix its own conf (0.001); ultralytics' matrix counts at the conf it is given.
        matrix = validator.confusion_matrix
        matrix.plot = lambda *args, **kwargs: None
        matrix.process_batch = lambda detections, batch, conf=None, **kwargs: type(matrix).process_batch(
            matrix, detections, batch, conf=matrix_conf, **kwargs
        )

    yolo = YOLO(str(weights), task="detect")
    yolo.add_callback("on_val_start", capture)
    yolo.add_callback("on_val_batch_start", confusion_matrix_at_conf)
    metrics = yolo.val(
        data=str(data_yaml),
        split="test",
        imgsz=imgsz,
        batch=16,
        plots=True,
        workers=0,
        verbose=False,
        save_json=False,
        project=str(workdir / "runs"),
        name="val",
        exist_ok=True,
    )
    names = metrics.names
    per_class = {}
    for position, class_index in enumerate(metrics.box.ap_class_index):
        p, r, ap50, ap = metrics.box.class_result(position)
        per_class[names[int(class_index)]] = {
            "precision": float(p),
            "recall": float(r),
            "map50": float(ap50),
            "map50_95": float(ap),
        }
    overall = {
        "precision": float(metrics.box.mp),
        "recall": float(metrics.box.mr),
        "map50": float(metrics.box.map50),
        "map50_95": float(metrics.box.map),
    }
    analysis = {**analysis_of(metrics), "confusion_conf": matrix_conf, "predictions": predictions}
    return {"overall": overall, "per_class": per_class, "analysis": analysis}, per_image


CURVE_POINTS = 101  # of ultralytics' 1000-point curves, 101 evenly spaced points are stored


def analysis_of(metrics) -> dict:
    """What ultralytics computed in this validation, stored for the pages to draw: its confusion matrix
    ([predicted][true], the last row and column "background"; predictions above the matrix's conf only), its
    per-class AP arrays and its precision-recall and F1-confidence curves per class."""
    names = [metrics.names[k] for k in sorted(metrics.names)]
    box = metrics.box
    picks = np.linspace(0, len(box.px) - 1, CURVE_POINTS).round().astype(int)
    classes = [names[int(c)] for c in box.ap_class_index]
    matrix = getattr(getattr(metrics, "confusion_matrix", None), "matrix", None)
    return {
        "names": names,
        "confusion_matrix": np.asarray(matrix).round().astype(int).tolist() if matrix is not None else None,
        "ap_classes": classes,
        "ap50": [float(v) for v in box.ap50],
        "ap50_95": [float(v) for v in box.ap],
        "curve_x": [round(float(v), 4) for v in np.asarray(box.px)[picks]],
        "pr": {
            name: [round(float(v), 4) for v in np.asarray(row)[picks]]
            for name, row in zip(classes, box.prec_values, strict=False)
        },
        "f1": {
            name: [round(float(v), 4) for v in np.asarray(row)[picks]]
            for name, row in zip(classes, box.f1_curve, strict=False)
        },
    }


def subset_metrics(stats: PerImageStats, indices, names: list[str]) -> dict:
    """Metrics over some test images (indices may repeat: bootstrap), through ultralytics' ap_per_class."""
    from ultralytics.utils.metrics import Metric, ap_per_class

    indices = list(indices)
    targets = [stats.target_cls[i] for i in indices]
    target_cls = np.concatenate(targets) if targets else np.zeros(0)
    result = {"images": len(indices), "boxes": int(len(target_cls))}
    if len(target_cls) == 0:
        return {**result, "precision": None, "recall": None, "map50": None, "map50_95": None}
    tp = np.concatenate([stats.tp[i] for i in indices]) if indices else np.zeros((0, 10), bool)
    conf = np.concatenate([stats.conf[i] for i in indices])
    pred_cls = np.concatenate([stats.pred_cls[i] for i in indices])
    metric = Metric()
    metric.nc = len(names)
    metric.update(ap_per_class(tp, conf, pred_cls, target_cls, names=dict(enumerate(names)))[2:])
    mp, mr, map50, map50_95 = metric.mean_results()
    return {**result, "precision": float(mp), "recall": float(mr), "map50": float(map50), "map50_95": float(map50_95)}


def bootstrap_map_diff(
    candidate: PerImageStats, production: PerImageStats, names: list[str], *, samples: int = BOOTSTRAP_SAMPLES, seed=0
) -> list[float]:
    """95% interval of candidate minus production mAP50-95, resampling test images (paired)."""
    n = len(candidate.conf)
    if n == 0 or n != len(production.conf):
        return []
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples):
        sample = rng.integers(0, n, n)
        a = subset_metrics(candidate, sample, names)["map50_95"]
        b = subset_metrics(production, sample, names)["map50_95"]
        if a is not None and b is not None:
            diffs.append(a - b)
    if not diffs:
        return []
    low, high = np.percentile(diffs, [2.5, 97.5])
    return [float(low), float(high)]


def evaluate_model(model, items: list[TestItem], classes: list[str]) -> tuple[dict, PerImageStats, float]:
    """Run the validator for ``model`` on ``items``; returns metrics (overall, per class, slices), stats, seconds."""
    import time

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vm-eval-") as tmp:
        workdir = Path(tmp)
        data_yaml = materialise_test_set(items, classes, workdir / "data")
        weights = local_weights(model, workdir)
        headline, per_image = run_validator(weights, data_yaml, imgsz=model.imgsz, workdir=workdir)
    stats = PerImageStats()
    for item in items:
        tp, conf, pred_cls, target_cls = per_image.get(
            item.sha256,
            (np.zeros((0, 10), bool), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32)),
        )
        stats.tp.append(tp)
        stats.conf.append(conf)
        stats.pred_cls.append(pred_cls)
        stats.target_cls.append(target_cls)
    slice_metrics = {
        kind: {name: subset_metrics(stats, indices, classes) for name, indices in groups.items()}
        for kind, groups in slices_of(items).items()
    }
    metrics = {**headline, "slices": slice_metrics, "images": len(items)}
    return metrics, stats, time.monotonic() - started


def save_stats(model_id: int, sha: str, stats: PerImageStats) -> str:
    path = f"evaluations/model-{model_id}/{sha}.npz"
    if default_storage.exists(path):
        default_storage.delete(path)
    return default_storage.save(path, ContentFile(stats.save_bytes()))


def load_stats(path: str) -> PerImageStats | None:
    if not path or not default_storage.exists(path):
        return None
    with default_storage.open(path, "rb") as handle:
        return PerImageStats.load_bytes(handle.read())


# --- leakage --------------------------------------------------------------------------------------------------


def _phash_int(value: str) -> int | None:
    try:
        return int(value, 16)
    except (TypeError, ValueError):
        return None


def near_duplicates(training: list[tuple[int, str, str]], items: list[TestItem], max_distance: int) -> list[dict]:
    """Pairs (training image, test image) whose perceptual hashes differ by at most ``max_distance`` bits."""
    train = [(image_id, sha, _phash_int(ph)) for image_id, sha, ph in training]
    train = [t for t in train if t[2] is not None]
    if not train or not items:
        return []
    train_hashes = np.array([t[2] for t in train], dtype=np.uint64)
    found = []
    for item in items:
        value = _phash_int(item.phash)
        if value is None:
            continue
        xor = np.bitwise_xor(train_hashes, np.uint64(value))
        distances = np.unpackbits(xor.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        for position in np.nonzero(distances <= max_distance)[0]:
            image_id, sha, _ = train[position]
            found.append(
                {
                    "test_image_id": item.image_id,
                    "test_sha256": item.sha256,
                    "train_image_id": image_id,
                    "train_sha256": sha,
                    "distance": int(distances[position]),
                }
            )
    return found
