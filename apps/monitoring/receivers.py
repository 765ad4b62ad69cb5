"""Monitoring listens to earlier apps (it is the last one, so they never import it): a new gate decision, a new
entry of the deployment history and a training run that failed become notifications."""

import functools
import logging

from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.deployments.models import Deployment, GateDecision
from apps.monitoring import services
from apps.training.models import TrainingRun

log = logging.getLogger(__name__)


def _never_break_the_write(handler):
    """A notification that cannot be recorded must not undo the promotion, decision or run that caused it (notify
    writes inside its own savepoint)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            handler(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.exception("notification for %s not recorded", kwargs.get("instance"))

    return wrapper


@receiver(post_save, sender=GateDecision, dispatch_uid="monitoring.gate_decision")
@_never_break_the_write
def _gate_decision_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        services.gate_decision_notify(decision=instance)


@receiver(post_save, sender=Deployment, dispatch_uid="monitoring.deployment")
@_never_break_the_write
def _deployment_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw:  # the history is append-only: a new row is a promotion, a canary or a rollback
        services.deployment_notify(deployment=instance)


@receiver(post_save, sender=TrainingRun, dispatch_uid="monitoring.run_failed")
@_never_break_the_write
def _run_saved(sender, instance, raw=False, **kwargs):
    # A run is saved many times; the notification's key makes "failed" count once.
    if not raw and instance.status == TrainingRun.Status.FAILED:
        services.run_failed_notify(run=instance)
