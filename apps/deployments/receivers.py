"""Signal receivers and the answers deployments gives earlier apps (connected in DeploymentsConfig.ready)."""

from django.core.cache import cache
from django.db import transaction

from apps.deployments import localcache, state


def model_trained(sender, model_version=None, run=None, **kwargs):
    """Training produced a model: evaluate it and apply the gate in the background, once the row is committed."""
    if model_version is None:
        return
    from apps.deployments.tasks import evaluate_and_gate_task

    model_id = model_version.pk
    transaction.on_commit(lambda: evaluate_and_gate_task.delay(model_id))


def production_model(dataset):
    """Which model is live in production for ``dataset`` (training fine-tunes it); None if none."""
    from apps.deployments.models import Deployment

    live = (
        Deployment.objects.filter(dataset=dataset, channel=Deployment.Channel.PRODUCTION, is_live=True)
        .select_related("model")
        .first()
    )
    return live.model if live else None


def dataset_changed(sender, instance, **kwargs):
    cache.delete(state.DATASETS_KEY)
    localcache.forget([state.DATASETS_KEY])
    state.invalidate_state(instance.slug)


def artifact_changed(sender, instance, **kwargs):
    """A model's artifacts changed: robots' cached answers that name it must be rebuilt."""
    state.invalidate_model(instance.model_id)
    from apps.deployments.models import Deployment

    slugs = set(
        Deployment.objects.filter(model_id=instance.model_id, is_live=True).values_list("dataset__slug", flat=True)
    )
    for slug in slugs:
        state.invalidate_state(slug)


def flush_seen_quietly():
    """At process exit: write buffered last-seen refreshes (best effort; the database may be gone)."""
    try:
        from apps.deployments.services import robot_seen_flush

        robot_seen_flush()
    except Exception:  # noqa: BLE001 - never fail an exiting process over last-seen times
        pass
