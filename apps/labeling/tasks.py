"""Celery tasks of labeling: thin wrappers that load ids and call the pre-label code."""

import logging

from celery import shared_task

from apps.datasets.models import Dataset, Image

log = logging.getLogger(__name__)


@shared_task(name="apps.labeling.tasks.prelabel_dataset_task", acks_late=True)
def prelabel_dataset_task(dataset_id: int, model_id: int, artifact_storage_path: str) -> int:
    """Deployments queues this on every production promotion with the model's .pt artifact (a storage path):
    remember the model for new images and predict the images still waiting for labels."""
    from apps.labeling.prelabel import prelabel_dataset

    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        log.warning("prelabel_dataset_task: dataset %s is gone", dataset_id)
        return 0
    return prelabel_dataset(dataset=dataset, model_id=model_id, artifact_storage_path=artifact_storage_path)


@shared_task(name="apps.labeling.tasks.prelabel_image_task", acks_late=True)
def prelabel_image_task(image_id: int) -> bool:
    """Predict one newly ingested image with its dataset's pre-label model."""
    from apps.labeling.prelabel import prelabel_image

    image = Image.objects.select_related("dataset").filter(pk=image_id).first()
    if image is None:
        return False
    return prelabel_image(image=image)


@shared_task(name="apps.labeling.tasks.suspect_labels_task", acks_late=True)
def suspect_labels_task(dataset_id: int, model_id: int, artifact_storage_path: str) -> int:
    """Deployments queues this after each evaluation with the evaluated model's .pt artifact (a storage path):
    score how much the model doubts each approved image's labels (the reviewers' suspect-labels queue)."""
    from apps.labeling.prelabel import suspects_find

    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        log.warning("suspect_labels_task: dataset %s is gone", dataset_id)
        return 0
    return suspects_find(dataset=dataset, model_id=model_id, artifact_storage_path=artifact_storage_path)
