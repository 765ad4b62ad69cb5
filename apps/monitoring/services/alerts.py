"""Alerts: open or refresh one per problem, acknowledge or resolve it; each change is broadcast on ``alerts.<slug>``
and a new alert, and one that resolves by itself, is sent to the dataset's notification rules."""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.deployments.models import Robot
from apps.monitoring.models import Alert
from apps.monitoring.selectors import alert_to_dict
from apps.monitoring.services.notifications import alert_notify, alert_resolved_notify
from vectormlops.errors import Conflict, ValidationFailed
from vectormlops.events import broadcast


def alert_raise(
    *,
    dataset: Dataset,
    kind: str,
    message: str,
    robot: Robot | None = None,
    scope: str | None = None,
    value: float | None = None,
    threshold: float | None = None,
    details: dict | None = None,
    now: datetime | None = None,
) -> tuple[Alert, bool]:
    """Open an alert, or refresh the open one of the same kind and scope (last_seen, value, message).

    Returns (alert, created). A new alert is broadcast on ``alerts.<slug>`` as ``alert.raised``, a refreshed one
    as ``alert.updated``."""
    if kind not in Alert.Kind.values:
        raise ValidationFailed(f"Unknown alert kind {kind!r}.", code="invalid_alert_kind")
    now = now or timezone.now()
    scope = scope or (f"robot:{robot.serial}" if robot else "fleet")
    for _attempt in range(3):
        try:
            with transaction.atomic():
                alert = (
                    Alert.objects.select_for_update()
                    .filter(Alert.OPEN, dataset=dataset, kind=kind, scope=scope)
                    .first()
                )
                created = alert is None
                if created:
                    alert = Alert(dataset=dataset, kind=kind, scope=scope, robot=robot, first_seen=now)
                else:
                    alert.occurrences += 1
                alert.value, alert.threshold, alert.message = value, threshold, message
                alert.details = details or {}
                alert.last_seen = max(now, alert.first_seen)
                alert.full_clean()
                alert.save()
                alert.dataset = dataset
                broadcast(
                    f"alerts.{dataset.slug}", "alert.raised" if created else "alert.updated", alert_to_dict(alert)
                )
                if created:
                    alert_notify(alert=alert)
                return alert, created
        except IntegrityError:
            # Another worker opened the same alert between our read and insert: refresh that one instead.
            continue
    raise Conflict("Could not record the alert (concurrent updates).", code="alert_conflict")


def alert_acknowledge(*, alert: Alert, user) -> Alert:
    """A person has seen the alert; the next occurrence of the same problem opens a new one."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("dataset").get(pk=alert.pk)
        if alert.acknowledged:
            return alert
        alert.acknowledged = True
        alert.acknowledged_by = user if getattr(user, "pk", None) and not getattr(user, "is_robot", False) else None
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["acknowledged", "acknowledged_by", "acknowledged_at"])
        broadcast(f"alerts.{alert.dataset.slug}", "alert.acknowledged", alert_to_dict(alert))
        return alert


def alert_resolve(*, alert: Alert, now: datetime | None = None) -> Alert:
    """The problem went away by itself (the figures recovered): close the alert without a person."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update(of=("self",)).select_related("dataset", "robot").get(pk=alert.pk)
        if not alert.is_open:
            return alert
        alert.resolved_at = now or timezone.now()
        alert.save(update_fields=["resolved_at"])
        broadcast(f"alerts.{alert.dataset.slug}", "alert.resolved", alert_to_dict(alert))
        alert_resolved_notify(alert=alert)
        return alert
