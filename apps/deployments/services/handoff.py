"""Background work deployments hands off after a commit: the gate for a new model, pre-labels with the new
production model, suspect labels after an evaluation (labeling gets plain data: ids and the artifact's path).

A message is published once the transaction commits, trying the broker twice at most and never waiting on the
result store (nobody reads these results): with Redis down a promotion answers at once and still commits, where a
plain ``.delay`` spends ~20 s retrying. A message that cannot be published is logged, not retried: each is advice
that the next event sends again (the next promotion re-sends pre-labels, the next evaluation suspect labels, the
next training its gate), and a person can promote a model the gate never saw (the gate verdict is then empty)."""

import logging

from django.db import transaction

from apps.datasets.models import Dataset
from apps.training.models import ModelVersion

log = logging.getLogger(__name__)

PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def publish_after_commit(task, *args) -> None:
    """Queue ``task(*args)`` when the current transaction commits (at once outside one); never raises."""

    def send():
        try:
            task.apply_async(args, retry=True, retry_policy=PUBLISH_RETRY, ignore_result=True)
        except Exception:  # noqa: BLE001 - a broker that does not answer must not fail what was committed
            log.warning("could not queue %s%r: the broker did not answer", task.name, args, exc_info=True)

    transaction.on_commit(send)


def model_handoff(task, *, dataset: Dataset, model: ModelVersion) -> None:
    """Hand a labeling task a model's artifact (``pt``, else ``onnx``) once committed; nothing without one."""
    artifact = model.artifacts.filter(format="pt").first() or model.artifacts.filter(format="onnx").first()
    if artifact is not None:
        publish_after_commit(task, dataset.pk, model.pk, artifact.storage_path)
