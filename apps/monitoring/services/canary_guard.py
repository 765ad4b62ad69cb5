"""The canary guard: stop a live canary whose field metrics are worse than production's beyond the policy."""

import logging
import math
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.deployments.models import Deployment
from apps.deployments.selectors import live_deployment
from apps.deployments.services import canary_end
from apps.monitoring.models import Alert
from apps.monitoring.selectors import canary_policy_for, feedback_by_model, model_field_metrics
from apps.monitoring.services.alerts import alert_raise
from vectormlops.errors import DomainError

log = logging.getLogger(__name__)


def canary_guard_check(*, dataset: Dataset, now: datetime | None = None) -> dict:
    """While a canary is live, compare its field metrics with production's since the canary started; when it is
    worse beyond the dataset's CanaryPolicy with at least min_frames on both sides, end it (no promotion, with the
    reason in the deployment history) and raise a canary alert. Returns what it found and did."""
    now = now or timezone.now()
    canary = live_deployment(dataset=dataset, channel=Deployment.Channel.CANARY)
    if canary is None or canary.model_id is None:
        return {"status": "no_canary"}
    production = live_deployment(dataset=dataset)
    if production is None or production.model_id is None:
        return {"status": "no_production"}
    policy = canary_policy_for(dataset)
    if not policy.enabled:
        return {"status": "disabled"}
    since = canary.created_at
    feedback = feedback_by_model(dataset=dataset, since=since, until=now)
    sides = {}
    for side, deployment in (("canary", canary), ("production", production)):
        metrics = model_field_metrics(dataset=dataset, model_id=deployment.model_id, since=since, until=now)
        metrics["feedback"] = feedback.get(deployment.model_id, 0)
        metrics["feedback_rate"] = metrics["feedback"] / metrics["frames"] if metrics["frames"] else None
        sides[side] = metrics
    c, p = sides["canary"], sides["production"]
    result = {"status": "waiting", "canary": c, "production": p, "min_frames": policy.min_frames}
    if c["frames"] < policy.min_frames or p["frames"] < policy.min_frames:
        return result
    reasons, worst = [], 0.0
    checks = (
        ("detection rate", p["detection_rate"], c["detection_rate"], policy.max_detection_rate_drop, -1),
        ("mean top confidence", p["mean_confidence"], c["mean_confidence"], policy.max_confidence_drop, -1),
        ("feedback per frame", p["feedback_rate"], c["feedback_rate"], policy.max_feedback_rate_increase, 1),
    )
    words = {
        "detection rate": "finds objects in {c:.0%} of frames vs {p:.0%}",
        "mean top confidence": "mean confidence {c:.2f} vs {p:.2f}",
        "feedback per frame": "{c100:.1f} feedback uploads per 100 frames vs {p100:.1f}",
    }
    sentences = []
    for label, prod_value, canary_value, limit, direction in checks:
        if prod_value is None or canary_value is None:
            continue
        worse_by = (canary_value - prod_value) * direction
        if worse_by > limit:
            reasons.append(
                f"{label} {canary_value:.3f} vs production {prod_value:.3f} (worse by {worse_by:.3f} > {limit})"
            )
            sentences.append(
                words[label].format(c=canary_value, p=prod_value, c100=canary_value * 100, p100=prod_value * 100)
            )
            worst = max(worst, worse_by / limit if limit else math.inf)
    if not reasons:
        result["status"] = "healthy"
        return result
    reason = (
        f"Canary guard: model v{canary.model.number} is worse than production over {c['frames']} / {p['frames']} "
        f"frames since {since:%Y-%m-%d %H:%M} UTC: " + "; ".join(reasons)
    )
    try:
        with transaction.atomic():
            ended = canary_end(dataset=dataset, promote=False, user=None, reason=reason)
            alert, _ = alert_raise(
                dataset=dataset,
                kind=Alert.Kind.CANARY,
                scope=f"model:{canary.model_id}",
                value=worst,
                threshold=1.0,
                message=(
                    f"The canary model v{canary.model.number} was stopped: it does worse than production model "
                    f"v{production.model.number} ({'; '.join(sentences)}) over {c['frames']} / {p['frames']} frames "
                    f"since {since:%Y-%m-%d %H:%M} UTC."
                ),
                details={
                    "canary": c,
                    "production": p,
                    "deployment_id": ended.id,
                    "model_id": canary.model_id,
                    "model_version": canary.model.number,
                    "reason": reason,
                },
                now=now,
            )
    except DomainError as exc:
        # Someone ended or replaced the canary meanwhile: nothing left to stop.
        log.info("canary guard on %s: canary already gone (%s)", dataset.slug, exc)
        return {**result, "status": "gone"}
    return {**result, "status": "ended", "reason": reason, "alert_id": alert.id}
