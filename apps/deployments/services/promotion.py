"""Which model robots run: promotion, rollback, canaries and pins.

Locks that span rows are taken in one fixed order: the Dataset row first, then the live Deployment rows of that
dataset (by id). Two people promoting at once therefore queue on the dataset row instead of both seeing "no live
production" and writing two (the partial unique constraint would reject the second anyway)."""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.deployments import robotstate
from apps.deployments.models import Deployment, GateDecision, Robot
from apps.deployments.selectors import current_gate_decision, rollback_target
from apps.deployments.services.handoff import model_handoff
from apps.labeling.tasks import prelabel_dataset_task
from apps.training.models import ModelVersion
from vectormlops.errors import Conflict, ValidationFailed
from vectormlops.events import broadcast

Channel = Deployment.Channel
Action = Deployment.Action


@dataclass(frozen=True)
class Promotion:
    """What a promotion left live on the channel, and whether this call put it there (False: it already was)."""

    deployment: Deployment
    changed: bool


def _lock_dataset(dataset_id: int) -> tuple[Dataset, dict[str, Deployment]]:
    """Lock the dataset row, then its live deployments (fixed order); return them by channel."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset_id)
    live = list(Deployment.objects.select_for_update().filter(dataset_id=dataset_id, is_live=True).order_by("id"))
    return dataset, {d.channel: d for d in live}


def _end(deployment: Deployment, now: datetime) -> None:
    deployment.is_live = False
    deployment.ended_at = now
    deployment.save(update_fields=["is_live", "ended_at"])


def _person(user):
    """The user to record as the author of a change: a signed-in person, never a robot or anonymous."""
    return user if getattr(user, "is_authenticated", False) and not getattr(user, "is_robot", False) else None


def _promote_entry(
    *, dataset: Dataset, channel: str, model, current, reason: str, user, gate_decision, now: datetime, **percent
) -> Deployment:
    """End ``current`` (the channel's live entry, if any) and record ``model`` live on ``channel`` in its place, with
    the gate's verdict beside the reason; ``percent`` is the canary's or the shadow's share."""
    if current is not None:
        _end(current, now)
    deployment = Deployment(
        dataset=dataset,
        channel=channel,
        action=Action.PROMOTE,
        model=model,
        previous=current,
        reason=reason,
        created_by=_person(user),
        gate_decision=gate_decision,
        gate_passed=gate_decision.passed if gate_decision else None,
        **percent,
    )
    deployment.full_clean(exclude=["previous", "restores", "gate_decision", "created_by", "model", "dataset"])
    deployment.save()
    return deployment


def _channel_close(live: Deployment, *, dataset: Dataset, reason: str, user, now: datetime) -> Deployment:
    """End a live canary or shadow and record it in the history (an END entry): robots fall back to production,
    or stop running the shadow model, on their next poll."""
    _end(live, now)
    ended = Deployment.objects.create(
        dataset=dataset,
        channel=live.channel,
        action=Action.END,
        model=live.model,
        previous=live,
        canary_percent=live.canary_percent,
        shadow_percent=live.shadow_percent,
        reason=reason,
        created_by=_person(user),
        is_live=False,
        ended_at=now,
    )
    _changed(dataset, ended)
    return ended


def _deployment_event(deployment: Deployment) -> dict:
    return {
        "id": deployment.pk,
        "channel": deployment.channel,
        "action": deployment.action,
        "model_id": deployment.model_id,
        "version": deployment.model.number if deployment.model_id else None,
        "canary_percent": deployment.canary_percent,
        "reason": deployment.reason,
        "at": deployment.created_at.isoformat() if deployment.created_at else None,
    }


def _changed(dataset: Dataset, deployment: Deployment) -> None:
    """Grow the generation robots' answers are checked against, and tell the browsers following this dataset."""
    robotstate.dataset_changed(dataset.pk)
    broadcast(f"deployments.{dataset.slug}", deployment.action, _deployment_event(deployment))


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A reason is required.", code="reason_required")
    return reason


@transaction.atomic
def model_promote(
    *,
    model: ModelVersion,
    channel: str,
    user=None,
    reason: str,
    canary_percent: int | None = None,
    shadow_percent: int | None = None,
    gate_decision: GateDecision | None = None,
    expected_production_id=...,
) -> Promotion:
    """Put ``model`` live on ``channel`` of its dataset; returns the live deployment and whether this call changed
    anything (promoting the model already live there does not).
    ``expected_production_id``: the production model the person saw the comparison against (None: nothing was in
    production); when another is live now, a 409 ``stale_comparison`` names it instead. The deployment records the
    gate decision against the production model live now on the current test set (None when none was computed)."""
    reason = _check_reason(reason)
    if channel not in Channel.values:
        raise ValidationFailed(f"Unknown channel {channel!r}.", code="bad_channel")
    if channel == Channel.SHADOW:
        from apps.deployments.services.shadow import shadow_start

        percent = 100 if shadow_percent is None else shadow_percent
        return shadow_start(model=model, shadow_percent=percent, user=user, reason=reason, gate_decision=gate_decision)
    if channel == Channel.CANARY:
        if canary_percent is None or not 1 <= int(canary_percent) <= 100:
            raise ValidationFailed("A canary needs canary_percent between 1 and 100.", code="bad_canary_percent")
        canary_percent = int(canary_percent)
    else:
        canary_percent = None
    if not model.artifacts.exists():
        raise ValidationFailed("This model has no artifacts to deploy.", code="no_artifacts")
    dataset, live = _lock_dataset(model.dataset_id)
    current = live.get(channel)
    if current is not None and current.model_id == model.pk and current.canary_percent == canary_percent:
        return Promotion(current, changed=False)  # promoting the model already live there changes nothing
    production = live.get(Channel.PRODUCTION)
    if channel == Channel.CANARY and (production is None or production.model_id == model.pk):
        raise ValidationFailed(
            "A canary runs beside a different production model; promote to production first.", code="no_production"
        )
    production_model = production.model if production is not None else None
    if expected_production_id is not ... and (production_model.pk if production_model else None) != (
        expected_production_id
    ):
        raise Conflict(
            "Production changed since the comparison was shown: "
            + (f"{production_model} is live now." if production_model else "nothing is live now.")
            + " Look at the new comparison and confirm again.",
            code="stale_comparison",
            details={
                "expected_production_id": expected_production_id,
                "production_id": production_model.pk if production_model else None,
                "production_number": production_model.number if production_model else None,
            },
        )
    if gate_decision is None:
        gate_decision = current_gate_decision(model, production=production_model)
    now = timezone.now()
    deployment = _promote_entry(
        dataset=dataset,
        channel=channel,
        model=model,
        current=current,
        reason=reason,
        user=user,
        gate_decision=gate_decision,
        now=now,
        canary_percent=canary_percent,
    )
    if channel == Channel.PRODUCTION:
        canary = live.get(Channel.CANARY)
        if canary is not None and canary.model_id == model.pk:
            # The canary graduated: its channel empties.
            _channel_close(canary, dataset=dataset, reason=f"promoted to production: {reason}", user=user, now=now)
        from apps.deployments.services.shadow import shadow_graduate

        shadow_graduate(dataset=dataset, live=live, model=model, reason=reason, user=user, now=now)
        model_handoff(prelabel_dataset_task, dataset=dataset, model=model)
    _changed(dataset, deployment)
    return Promotion(deployment, changed=True)


@transaction.atomic
def deployment_rollback(*, dataset: Dataset, channel: str = Channel.PRODUCTION, user=None, reason: str) -> Deployment:
    """Re-deploy the model that was live before the current one; repeatable (v7 → v6 → v5)."""
    reason = _check_reason(reason)
    if channel not in Channel.values:
        raise ValidationFailed(f"Unknown channel {channel!r}.", code="bad_channel")
    dataset, live = _lock_dataset(dataset.pk)
    current = live.get(channel)
    if current is None:
        raise Conflict(f"Nothing is live on {channel}; there is nothing to roll back.", code="nothing_live")
    target = rollback_target(current)
    if target is None or target.model_id is None:
        raise Conflict("There is no earlier model to roll back to.", code="no_previous_deployment")
    now = timezone.now()
    _end(current, now)
    deployment = Deployment.objects.create(
        dataset=dataset,
        channel=channel,
        action=Action.ROLLBACK,
        model_id=target.model_id,
        previous=current,
        restores=target,
        canary_percent=target.canary_percent if channel == Channel.CANARY else None,
        reason=reason,
        created_by=_person(user),
    )
    if channel == Channel.PRODUCTION:
        model_handoff(prelabel_dataset_task, dataset=dataset, model=deployment.model)
    _changed(dataset, deployment)
    return deployment


@transaction.atomic
def canary_end(*, dataset: Dataset, promote: bool, user=None, reason: str) -> Deployment:
    """End the live canary: promote its model to production, or drop it (robots fall back to production)."""
    reason = _check_reason(reason)
    dataset, live = _lock_dataset(dataset.pk)
    canary = live.get(Channel.CANARY)
    if canary is None:
        raise Conflict("No canary is live for this dataset.", code="no_canary")
    if promote:
        model_promote(model=canary.model, channel=Channel.PRODUCTION, user=user, reason=reason)
        return Deployment.objects.filter(dataset=dataset, channel=Channel.CANARY).order_by("-id").first()
    return _channel_close(canary, dataset=dataset, reason=reason, user=user, now=timezone.now())


@transaction.atomic
def robot_pin(*, robot: Robot, model: ModelVersion | None, user=None) -> Robot:
    """Pin a robot to a model (it gets that model whatever the channels say), or unpin it with ``model=None``."""
    robot = Robot.objects.select_for_update().get(pk=robot.pk)
    if model is not None and not model.artifacts.exists():
        raise ValidationFailed("This model has no artifacts to deploy.", code="no_artifacts")
    robot.pinned_model = model
    robot.pinned_at = timezone.now() if model else None
    robot.save(update_fields=["pinned_model", "pinned_at"])  # robots' generation grows (receivers.robot_changed)
    if model is not None:
        broadcast(f"deployments.{model.dataset.slug}", "pin", {"robot": robot.serial, "model_id": model.pk})
    return robot
