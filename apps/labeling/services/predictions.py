"""Model predictions shown as suggestions (the server's pre-label model or a robot's own detections)."""

from django.db import transaction

from apps.datasets.boxes import predicted_boxes_clean
from apps.datasets.models import Dataset, Image
from apps.labeling.models import Prediction, PrelabelModel


def prediction_certainty(confidences: list[float]) -> float:
    """How sure the model is about the image: its least sure box's max(c, 1 - c) (0.5 = coin toss); 1 with no box
    above the low storage threshold (the model is confident there is nothing)."""
    if not confidences:
        return 1.0
    return float(min(max(c, 1.0 - c) for c in confidences))


def predictions_store(
    *,
    image: Image,
    boxes: list[dict],
    source: str,
    model_id: int | None = None,
    model_sha256: str = "",
) -> Prediction:
    """Store a model's boxes for an image (``{"class_id"|"label", "box", "confidence"}``); invalid boxes (unknown
    label, outside the image, empty) are dropped, since predictions are suggestions, not labels."""
    clean = predicted_boxes_clean(boxes, classes=list(image.dataset.classes), width=image.width, height=image.height)
    with transaction.atomic():
        prediction, _ = Prediction.objects.update_or_create(
            image=image,
            defaults={
                "source": source,
                "model_id": model_id,
                "model_sha256": model_sha256 or "",
                "boxes": clean,
                "certainty": prediction_certainty([b["confidence"] for b in clean]),
            },
        )
    return prediction


def predictions_from_meta(*, image: Image) -> Prediction | None:
    """A robot's own detections sent in ``Image.meta["predictions"]`` become the image's prediction."""
    meta = image.meta if isinstance(image.meta, dict) else {}
    predictions = meta.get("predictions")
    if not isinstance(predictions, list):
        return None
    model_id = meta.get("model_id")
    return predictions_store(
        image=image,
        boxes=predictions,
        source=Prediction.Source.ROBOT,
        model_id=model_id if isinstance(model_id, int) else None,
        model_sha256=str(meta.get("model_sha256", ""))[:64],
    )


def prelabel_model_set(*, dataset: Dataset, model_id: int, storage_path: str, sha256: str) -> PrelabelModel:
    """Remember which model pre-labels this dataset (called on every production promotion)."""
    with transaction.atomic():
        prelabel, _ = PrelabelModel.objects.update_or_create(
            dataset=dataset, defaults={"model_id": model_id, "storage_path": storage_path, "sha256": sha256}
        )
    return prelabel


def predictions_remap(*, dataset: Dataset, mapping: dict) -> int:
    """Move stored predictions with a change of the dataset's class ids (old id -> new id, None: class deleted).
    Runs inside the transaction of the class edit (datasets' classes_remapped signal). Returns rows changed."""
    changed = []
    for prediction in Prediction.objects.filter(image__dataset=dataset).iterator(500):
        boxes = [
            {**b, "class_id": mapping[b["class_id"]]}
            for b in prediction.boxes
            if mapping.get(b["class_id"]) is not None
        ]
        if boxes != prediction.boxes:
            prediction.boxes = boxes
            changed.append(prediction)
    Prediction.objects.bulk_update(changed, ["boxes"], batch_size=500)
    return len(changed)


def on_classes_remapped(sender, dataset: Dataset, mapping: dict, **kwargs) -> None:
    predictions_remap(dataset=dataset, mapping=mapping)
