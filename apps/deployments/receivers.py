"""Signal receivers and the answers deployments gives earlier apps (connected in DeploymentsConfig.ready)."""

from apps.deployments import robotstate


def model_trained(sender, model_version=None, run=None, **kwargs):
    """Training produced a model: evaluate it and apply the gate in the background, once the row is committed."""
    if model_version is None:
        return
    from apps.deployments.services.handoff import publish_after_commit
    from apps.deployments.tasks import evaluate_and_gate_task

    publish_after_commit(evaluate_and_gate_task, model_version.pk)


def dataset_changed(sender, instance, **kwargs):
    """A dataset was created, renamed or deleted: robots' answers about it are rebuilt."""
    robotstate.dataset_changed(instance.pk)


def artifact_changed(sender, instance, **kwargs):
    """A model's artifacts changed: robots' answers that may name it are rebuilt."""
    from apps.training.models import ModelVersion

    dataset_id = ModelVersion.objects.filter(pk=instance.model_id).values_list("dataset_id", flat=True).first()
    if dataset_id is not None:
        robotstate.dataset_changed(dataset_id)


def robot_changed(sender, instance, created=False, **kwargs):
    """An existing robot changed (revoked, new token, pinned, unpinned, deleted): its cached token is out of date.
    A new robot changes nothing cached (unknown tokens are never cached)."""
    if not created:
        robotstate.robots_changed()


def flush_seen_quietly():
    """At process exit: write buffered last-seen refreshes (best effort; the database may be gone)."""
    try:
        robotstate.robot_seen_flush()
    except Exception:  # noqa: BLE001 - never fail an exiting process over last-seen times
        pass
