"""Server-side model runs: pre-labels (the dataset's production model's boxes stored as predictions on images
waiting for labels) and suspect labels (a freshly evaluated model's boxes compared with approved labels). Both run
ultralytics on a local copy of the artifact; the only module of labeling that touches ultralytics."""

import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.datasets.models import Dataset, Image
from apps.datasets.storage import place_stored_file, sha256_of_file, stored_file_on_disk
from apps.labeling import services
from apps.labeling.models import Prediction, PrelabelModel
from apps.labeling.suspects import calibrated_confidence

log = logging.getLogger(__name__)
STORE_MIN_CONFIDENCE = 0.05  # low boxes are kept: they tell how unsure the model is
BATCH = 16
_MODELS: dict[str, object] = {}  # sha256 -> loaded YOLO, one per worker process


def _cache_dir() -> Path:
    path = Path(settings.VAR_DIR) / "prelabel-models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _local_copy(storage_path: str) -> tuple[Path, str]:
    """Copy the artifact from storage (disk or S3) to a local file named by its sha256."""
    with tempfile.NamedTemporaryFile(dir=_cache_dir(), suffix=".part", delete=False) as tmp:
        part = Path(tmp.name)
    place_stored_file(storage_path, part, link=False)
    sha256, _ = sha256_of_file(part)
    target = _cache_dir() / f"{sha256}{_suffix(storage_path)}"
    if target.exists():
        part.unlink()
    else:
        os.replace(part, target)
    return target, sha256


def _suffix(storage_path: str) -> str:
    # ultralytics picks the backend from the extension: deployments hands over the .pt, or the .onnx when alone.
    return ".onnx" if storage_path.lower().endswith(".onnx") else ".pt"


def _model_path(prelabel: PrelabelModel) -> Path:
    target = _cache_dir() / f"{prelabel.sha256}{_suffix(prelabel.storage_path)}"
    if not target.exists():
        path, sha256 = _local_copy(prelabel.storage_path)
        if sha256 != prelabel.sha256:
            raise ValueError(f"artifact {prelabel.storage_path} changed: sha256 {sha256} != {prelabel.sha256}")
        return path
    return target


def _load_file(sha256: str, path: Path):
    model = _MODELS.get(sha256)
    if model is None:
        from ultralytics import YOLO

        model = YOLO(str(path), task="detect")
        _MODELS.clear()  # keep one model in memory per worker
        _MODELS[sha256] = model
    return model


def _load(prelabel: PrelabelModel):
    return _load_file(prelabel.sha256, _model_path(prelabel))


def _predictions(model, images: list[Image]):
    """Yield (image, [{class_id, box: [x, y, w, h], confidence}]) for ``images``, a batch at a time."""
    with tempfile.TemporaryDirectory(dir=_cache_dir()) as workdir:
        for start in range(0, len(images), BATCH):
            batch = images[start : start + BATCH]
            paths = [stored_file_on_disk(image.storage_path, workdir) for image in batch]
            results = model.predict(paths, conf=STORE_MIN_CONFIDENCE, verbose=False)
            for image, result in zip(batch, results, strict=True):
                boxes = []
                if result.boxes is not None:
                    for xyxy, conf, cls in zip(
                        result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist(), strict=True
                    ):
                        x0, y0, x1, y1 = xyxy
                        boxes.append({"class_id": int(cls), "box": [x0, y0, x1 - x0, y1 - y0], "confidence": conf})
                yield image, boxes


def predict_images(*, prelabel: PrelabelModel, images: list[Image]) -> int:
    """Predict and store boxes for ``images`` with the pre-label model; returns how many were stored."""
    if not images:
        return 0
    stored = 0
    for image, boxes in _predictions(_load(prelabel), images):
        services.predictions_store(
            image=image,
            boxes=boxes,
            source=Prediction.Source.SERVER,
            model_id=prelabel.model_id,
            model_sha256=prelabel.sha256,
        )
        stored += 1
    return stored


def _labels(image: Image) -> list[dict]:
    annotation = getattr(image, "annotation", None)  # approved images have one; a missing one reads as no boxes
    return annotation.boxes if annotation is not None else []


def suspects_find(*, dataset: Dataset, model_id: int, artifact_storage_path: str) -> int:
    """Run a trained model over the dataset's approved images and score how much it doubts each one's labels
    (apps.labeling.suspects); the reviewers' "suspect labels" queue lists the worst first. Returns images scored."""
    path, sha256 = _local_copy(artifact_storage_path)
    model = _load_file(sha256, path)
    images = list(
        Image.objects.filter(dataset=dataset, status=Image.Status.APPROVED)
        .select_related("dataset", "annotation")
        .order_by("id")
    )
    predicted = list(_predictions(model, images))  # boxes only: a few per image, fine in memory
    # The model's own bar for "confident", from how sure it is where it agrees with the labels.
    pairs = [(_labels(image), boxes) for image, boxes in predicted]
    confident = calibrated_confidence(pairs)
    scored = 0
    for image, boxes in predicted:
        if services.suspects_store(image=image, model_id=model_id, predictions=boxes, confident=confident) is not None:
            scored += 1
    log.info(
        "suspect labels of %s: model %s, confident >= %.2f, %d images scored", dataset.slug, model_id, confident, scored
    )
    return scored


def prelabel_dataset(*, dataset: Dataset, model_id: int, artifact_storage_path: str) -> int:
    """Make this model the dataset's pre-label model, then predict every image still waiting for labels that it
    has not predicted yet. Returns the number of images predicted."""
    _path, sha256 = _local_copy(artifact_storage_path)
    prelabel = services.prelabel_model_set(
        dataset=dataset, model_id=model_id, storage_path=artifact_storage_path, sha256=sha256
    )
    pending = list(
        Image.objects.filter(dataset=dataset, status__in=services.QUEUE_STATUSES)
        .exclude(prediction__source=Prediction.Source.SERVER, prediction__model_sha256=sha256)
        .select_related("dataset")
        .order_by("id")
    )
    return predict_images(prelabel=prelabel, images=pending)


def prelabel_image(*, image: Image) -> bool:
    """Predict one new image with its dataset's pre-label model, if the dataset has one."""
    prelabel = PrelabelModel.objects.filter(dataset_id=image.dataset_id).first()
    if prelabel is None:
        return False
    return predict_images(prelabel=prelabel, images=[image]) == 1


def on_image_ingested(sender, image: Image, **kwargs) -> None:
    """Receiver of datasets' image_ingested: store the robot's own predictions, queue a server pre-label."""
    try:
        services.predictions_from_meta(image=image)
    except Exception:  # noqa: BLE001 - a robot's odd meta must never break ingestion
        log.warning("could not store the robot's predictions of image %s", image.pk, exc_info=True)
    if PrelabelModel.objects.filter(dataset_id=image.dataset_id).exists():
        from apps.labeling.tasks import prelabel_image_task

        transaction.on_commit(lambda: prelabel_image_task.delay(image.pk))
