"""Production performance: the live production model's recent field metrics, fleet-wide and per robot, against its
own first days in production (or the previous production model's last days); alerts open and resolve by themselves."""

from datetime import datetime, timedelta

from django.utils import timezone

from apps.datasets.models import Dataset
from apps.deployments.models import Robot
from apps.deployments.selectors import live_deployment
from apps.monitoring import selectors
from apps.monitoring.models import Alert, PerformancePolicy
from apps.monitoring.presentation import scope_subject
from apps.monitoring.services.alerts import alert_raise, alert_resolve


def _baseline(
    *, dataset: Dataset, model, policy: PerformancePolicy, before: datetime
) -> tuple[dict, str, datetime | None, str]:
    """Metrics per robot (and fleet, key None) to judge the model against, how to say what they are, from when on the
    model's frames are judged (None: the whole window), and why there is no baseline (when there is none).

    In order: the model's first days in production before the judged window; else the previous production model's
    last days (a model promoted within the window); else, with neither (a first model, a new installation), the
    model's own first ``min_frames`` frames, judged against the frames after them: enough frames, not an age,
    make it judgeable, so a room dimmed ten minutes after the first promotion still raises an alert."""
    started, previous = selectors.production_periods(dataset=dataset, model_id=model.id)
    if started is None:
        return {None: {"frames": 0}}, "", None, "the live model has no production history"
    until = min(started + timedelta(days=policy.baseline_days), before)
    if until > started:
        own = selectors.model_metrics_by_robot(dataset=dataset, model_id=model.id, since=started, until=until)
        if own[None]["frames"] >= policy.min_frames:
            return own, "in its first days in production", None, ""
    if previous is not None:
        since = max(previous.created_at, started - timedelta(days=policy.baseline_days))
        prior = selectors.model_metrics_by_robot(
            dataset=dataset, model_id=previous.model_id, since=since, until=started
        )
        if prior[None]["frames"] >= policy.min_frames:
            return prior, f"model v{previous.model.number} did before it", None, ""
    # The frame just after the first min_frames ends the baseline; the judged frames start there.
    judged_from = selectors.model_frame_at(
        dataset=dataset, model_id=model.id, since=started, position=policy.min_frames
    )
    if judged_from is None:
        return (
            {None: {"frames": 0}},
            "",
            None,
            f"model v{model.number} needs {policy.min_frames} frames in production as its baseline "
            f"and {policy.min_frames} more to judge (no earlier production model to compare with)",
        )
    first = selectors.model_metrics_by_robot(dataset=dataset, model_id=model.id, since=started, until=judged_from)
    return first, f"in its first {first[None]['frames']} frames in production", judged_from, ""


def _judge(recent: dict, base: dict, policy: PerformancePolicy) -> tuple[list[str], float]:
    """Sentence parts for each figure worse than tolerated, and the worst excess (1.0 = at the threshold)."""
    parts, worst = [], 0.0
    checks = (
        ("detection_rate", -1, policy.max_detection_rate_drop, "finds objects in {now:.0%} of frames vs {then:.0%}"),
        ("mean_confidence", -1, policy.max_confidence_drop, "mean confidence {now:.2f} vs {then:.2f}"),
        (
            "feedback_rate",
            1,
            policy.max_feedback_rate_increase,
            "{now_100:.1f} feedback uploads per 100 frames vs {then_100:.1f}",
        ),
    )
    for name, direction, limit, sentence in checks:
        now_value, then_value = recent.get(name), base.get(name)
        if now_value is None or then_value is None:
            continue
        worse_by = (now_value - then_value) * direction
        if worse_by > limit:
            parts.append(
                sentence.format(now=now_value, then=then_value, now_100=now_value * 100, then_100=then_value * 100)
            )
            worst = max(worst, worse_by / limit if limit else float("inf"))
    return parts, worst


def performance_check(*, dataset: Dataset, now: datetime | None = None) -> dict:
    """Judge the live production model's last ``window_minutes`` (fleet and each robot with enough frames) against
    its baseline; raise a performance alert per scope that is worse beyond the dataset's PerformancePolicy and
    resolve the open ones whose figures are back within it. Returns what it found per scope."""
    now = now or timezone.now()
    production = live_deployment(dataset=dataset)
    if production is None or production.model_id is None:
        return {"status": "no_production"}
    policy = selectors.performance_policy_for(dataset)
    if not policy.enabled:
        return {"status": "disabled"}
    model = production.model
    window_start = now - timedelta(minutes=policy.window_minutes)
    baseline, baseline_label, judged_from, why_not = _baseline(
        dataset=dataset, model=model, policy=policy, before=window_start
    )
    if baseline[None]["frames"] < policy.min_frames:
        return {"status": "no_baseline", "reason": why_not}
    since = max(window_start, judged_from) if judged_from else window_start
    recent = selectors.model_metrics_by_robot(dataset=dataset, model_id=model.id, since=since, until=now)
    # Judged from a young model's first frames: the period is shorter than the window; say how long it is.
    minutes = policy.window_minutes if since == window_start else max(1, round((now - since).total_seconds() / 60))
    robots = Robot.objects.in_bulk([rid for rid in recent if rid is not None])
    open_by_scope = {a.scope: a for a in selectors.open_alerts(dataset=dataset, kind=Alert.Kind.PERFORMANCE)}
    scopes = {}
    for robot_id, figures in recent.items():
        robot = robots.get(robot_id) if robot_id else None
        if robot_id and robot is None:
            continue
        scope = f"robot:{robot.serial}" if robot else "fleet"
        if figures["frames"] < policy.min_frames:
            scopes[scope] = "waiting"
            continue
        # A robot is judged against its own baseline when it has one, else against the fleet's.
        own = baseline.get(robot_id) if robot_id else None
        base = own if own and own["frames"] >= policy.min_frames else baseline[None]
        parts, worst = _judge(figures, base, policy)
        if parts:
            message = (
                f"{scope_subject(robot)} is doing worse with model v{model.number} than {baseline_label}: "
                + "; ".join(parts)
                + f" (last {minutes} minutes, {figures['frames']} frames)."
            )
            alert_raise(
                dataset=dataset,
                kind=Alert.Kind.PERFORMANCE,
                robot=robot,
                scope=scope,
                value=worst,
                threshold=1.0,
                message=message,
                details={
                    "model_id": model.id,
                    "model_version": model.number,
                    "recent": figures,
                    "baseline": base,
                    "compared_with": baseline_label,
                    "window_minutes": policy.window_minutes,
                    "judged_since": since.isoformat(),
                },
                now=now,
            )
            scopes[scope] = "alert"
        else:
            if scope in open_by_scope:
                alert_resolve(alert=open_by_scope[scope], now=now)
                scopes[scope] = "resolved"
            else:
                scopes[scope] = "healthy"
    result = {"status": "checked", "scopes": scopes}
    if scopes.get("fleet") == "waiting":
        result["reason"] = (
            f"{recent[None]['frames']} frames of model v{model.number} to judge since {since:%H:%M} UTC; "
            f"{policy.min_frames} are needed"
        )
    return result
