"""Reads of monitoring: field metrics over time, the fleet table, version skew, alerts, the drift reference and
window, a model's raw field metrics for the canary guard, a shadow model's summed field counters (deployments' gate
and shadow panel ask for them through ``apps.deployments.hooks``)."""

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Avg, Count, Max, Q, Sum
from django.utils import timezone

from apps.datasets.models import Dataset, Image, VersionItem
from apps.deployments.models import Deployment, Robot, TelemetryRecord
from apps.deployments.selectors import live_deployments_query, production_model
from apps.monitoring import histograms, statistics
from apps.monitoring.models import (
    CONFIDENCE_BINS,
    HOURLY_COUNTERS,
    Alert,
    CanaryPolicy,
    DriftReport,
    HourlyMetric,
    PerformancePolicy,
    ShadowHourly,
)
from apps.training.models import ModelVersion
from vectormlops.errors import NotFound

ROBOT_SOURCES = (
    Image.Source.CAMERA,
    Image.Source.LOW_CONFIDENCE,
    Image.Source.FEEDBACK,
    Image.Source.SHADOW_DISAGREEMENT,
)
TELEMETRY_DRIFT_SAMPLE = 5_000


def _empty() -> dict:
    return {
        **{name: 0 for name in HOURLY_COUNTERS},
        "confidence_hist": [0] * CONFIDENCE_BINS,
        "latency_hist": {},
        "feedback": {},
    }


def _merge(into: dict, row: HourlyMetric) -> None:
    for name in HOURLY_COUNTERS:
        into[name] += getattr(row, name)
    histograms.list_add(into["confidence_hist"], row.confidence_hist or [])
    histograms.hist_add(into["latency_hist"], row.latency_hist or {})
    histograms.hist_add(into["feedback"], row.feedback or {})


def summarize(acc: dict) -> dict:
    """Counters of merged buckets → the figures people read."""
    frames = acc["frames"]

    def r(value, digits=4):
        return None if value is None else round(value, digits)

    return {
        "frames": frames,
        "frames_with_detection": acc["frames_with_detection"],
        "detection_rate": r(acc["frames_with_detection"] / frames) if frames else None,
        "detections_per_frame": r(acc["detections"] / frames) if frames else None,
        "mean_confidence": r(acc["confidence_sum"] / acc["confidence_count"]) if acc["confidence_count"] else None,
        "confidence_p10": r(histograms.confidence_quantile(acc["confidence_hist"], 0.10)),
        "confidence_p50": r(histograms.confidence_quantile(acc["confidence_hist"], 0.50)),
        "confidence_p90": r(histograms.confidence_quantile(acc["confidence_hist"], 0.90)),
        "latency_mean_ms": r(acc["latency_sum_ms"] / acc["latency_count"], 2) if acc["latency_count"] else None,
        "latency_p50_ms": r(histograms.latency_quantile(acc["latency_hist"], 0.50), 2),
        "latency_p95_ms": r(histograms.latency_quantile(acc["latency_hist"], 0.95), 2),
        "mean_brightness": r(acc["brightness_sum"] / acc["brightness_count"]) if acc["brightness_count"] else None,
        "feedback": dict(acc["feedback"]),
        "feedback_total": acc["feedback_total"],
        "feedback_per_frame": r(acc["feedback_total"] / frames, 5) if frames else None,
    }


def field_metrics(
    *, dataset: Dataset, since: datetime, until: datetime | None = None, robot: Robot | None = None
) -> dict:
    """Hourly series and totals per model version (fleet-wide, or of one robot) between two times."""
    until = until or timezone.now()
    rows = HourlyMetric.objects.filter(dataset=dataset, hour__gte=since.replace(minute=0, second=0, microsecond=0))
    rows = rows.filter(hour__lte=until)
    rows = rows.filter(robot=robot) if robot is not None else rows.filter(robot__isnull=True)
    series: dict[int | None, dict[datetime, dict]] = defaultdict(dict)
    totals: dict[int | None, dict] = defaultdict(_empty)
    for row in rows.order_by("hour"):
        bucket = series[row.model_id].setdefault(row.hour, _empty())
        _merge(bucket, row)
        _merge(totals[row.model_id], row)
    numbers = dict(ModelVersion.objects.filter(id__in=[m for m in series if m]).values_list("id", "number"))
    channels = dict(live_deployments_query(dataset).values_list("model_id", "channel"))
    models = []
    for model_id in sorted(series, key=lambda m: (m is None, numbers.get(m, 0))):
        models.append(
            {
                "model_id": model_id,
                "version": numbers.get(model_id),
                "label": f"v{numbers[model_id]}" if model_id in numbers else "unknown model",
                "channel": channels.get(model_id, "") if model_id else "",
                "totals": summarize(totals[model_id]),
                "series": [{"hour": hour.isoformat(), **summarize(acc)} for hour, acc in series[model_id].items()],
            }
        )
    return {
        "dataset": dataset.slug,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "robot": robot.serial if robot else None,
        "models": models,
    }


def field_report(*, dataset: Dataset, since: datetime, robot: Robot | None = None) -> dict:
    """What the field-metrics API answers: ``field_metrics`` since a time (fleet-wide or of one robot), with the
    fleet table of that period and the version skew of the robots seen in the last day."""
    body = field_metrics(dataset=dataset, since=since, robot=robot)
    body["fleet"] = fleet_table(dataset=dataset, since=since)
    body["version_skew"] = version_skew(dataset=dataset, seen_since=timezone.now() - timedelta(days=1))
    return body


def fleet_table(*, dataset: Dataset, since: datetime) -> list[dict]:
    """One row per robot that ran a model of this dataset or reported on it since ``since``."""
    per_robot = {
        row["robot_id"]: row
        for row in HourlyMetric.objects.filter(dataset=dataset, robot__isnull=False, hour__gte=since)
        .values("robot_id")
        .annotate(frames=Sum("frames"), with_detection=Sum("frames_with_detection"), feedback=Sum("feedback_total"))
    }
    robots = Robot.objects.filter(Q(id__in=per_robot) | Q(running_model__dataset=dataset)).select_related(
        "running_model"
    )
    out = []
    for robot in robots.order_by("serial"):
        stats = per_robot.get(robot.id, {})
        frames = stats.get("frames") or 0
        running = robot.running_model if robot.running_model and robot.running_model.dataset_id == dataset.id else None
        out.append(
            {
                "serial": robot.serial,
                "name": robot.name,
                "active": robot.is_active,
                "last_seen_at": robot.last_seen_at,
                "running_model_id": running.id if running else None,
                "running_version": running.number if running else None,
                "running_sha256": robot.running_sha256,
                "pinned_model_id": robot.pinned_model_id,
                "frames": frames,
                "detection_rate": round((stats.get("with_detection") or 0) / frames, 4) if frames else None,
                "feedback": stats.get("feedback") or 0,
            }
        )
    return out


def version_skew(*, dataset: Dataset, seen_since: datetime) -> list[dict]:
    """Share of the robots seen since ``seen_since`` per model they report running (for this dataset)."""
    robots = list(
        Robot.objects.filter(is_active=True, last_seen_at__gte=seen_since, running_model__dataset=dataset).values_list(
            "running_model_id", "running_model__number"
        )
    )
    live = dict(live_deployments_query(dataset).values_list("model_id", "channel"))
    counts: dict[tuple, int] = defaultdict(int)
    for model_id, number in robots:
        counts[(model_id, number)] += 1
    total = sum(counts.values())
    return [
        {
            "model_id": model_id,
            "version": number,
            "robots": n,
            "share": round(n / total, 4),
            "channel": live.get(model_id, "retired"),
        }
        for (model_id, number), n in sorted(counts.items(), key=lambda kv: -kv[1])
    ]


def latest_drift_reports(*, dataset: Dataset) -> list[DriftReport]:
    """The newest report of each scope (fleet and each robot) from the latest computation."""
    latest = DriftReport.objects.filter(dataset=dataset).order_by("-computed_at").values_list("computed_at", flat=True)
    moment = latest.first()
    if moment is None:
        return []
    return list(
        DriftReport.objects.filter(dataset=dataset, computed_at=moment).select_related("robot").order_by("robot_id")
    )


def dataset_alerts(*, dataset: Dataset, limit: int = 50) -> list[Alert]:
    """Open alerts first, then the latest closed ones (acknowledged or resolved)."""
    alerts = list(
        Alert.objects.filter(dataset=dataset)
        .select_related("robot", "acknowledged_by", "dataset")
        .order_by("-last_seen", "-id")[:limit]
    )
    return sorted(alerts, key=lambda a: not a.is_open)


def alert_by_id(alert_id: int) -> Alert:
    """One alert with what its pages show; a missing one is a 404 ``alert_not_found``."""
    alert = Alert.objects.select_related("dataset", "robot", "acknowledged_by").filter(pk=alert_id).first()
    if alert is None:
        raise NotFound(f"No alert {alert_id}.", code="alert_not_found")
    return alert


def robot_by_serial(serial: str) -> Robot:
    """The robot with this serial; a missing one is a 404 ``robot_not_found``."""
    robot = Robot.objects.filter(serial=serial).first()
    if robot is None:
        raise NotFound(f"No robot {serial!r}.", code="robot_not_found")
    return robot


def alert_drift_report(alert: Alert) -> DriftReport | None:
    """The drift report behind a drift alert (its statistics are folded under the alert's sentence)."""
    report_id = (alert.details or {}).get("report_id")
    return DriftReport.objects.filter(pk=report_id).first() if report_id else None


def alert_to_dict(alert: Alert) -> dict:
    """An alert as the events on ``alerts.<slug>`` carry it."""
    return {
        "id": alert.id,
        "dataset": alert.dataset.slug,
        "kind": alert.kind,
        "scope": alert.scope,
        "robot": alert.robot.serial if alert.robot_id else None,
        "value": alert.value,
        "threshold": alert.threshold,
        "message": alert.message,
        "details": alert.details,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "occurrences": alert.occurrences,
        "acknowledged": alert.acknowledged,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def datasets_overview(*, since: datetime) -> list[dict]:
    """Every dataset with its live models, open alerts and frames since ``since`` (the monitoring home page)."""
    frames = dict(
        HourlyMetric.objects.filter(robot__isnull=True, hour__gte=since)
        .values_list("dataset_id")
        .annotate(n=Sum("frames"))
        .values_list("dataset_id", "n")
    )
    open_alerts = dict(
        Alert.objects.filter(Alert.OPEN)
        .values_list("dataset_id")
        .annotate(n=Count("id"))
        .values_list("dataset_id", "n")
    )
    live: dict[int, dict[str, Deployment]] = {}
    for deployment in live_deployments_query():
        live.setdefault(deployment.dataset_id, {})[deployment.channel] = deployment
    return [
        {
            "dataset": d,
            "production": live.get(d.id, {}).get("production"),
            "canary": live.get(d.id, {}).get("canary"),
            "frames_24h": frames.get(d.id, 0),
            "open_alerts": open_alerts.get(d.id, 0),
        }
        for d in Dataset.objects.order_by("slug")
    ]


def canary_policy_for(dataset: Dataset) -> CanaryPolicy:
    """The dataset's policy, or the defaults (unsaved) when none was set in the admin."""
    return CanaryPolicy.objects.filter(dataset=dataset).first() or CanaryPolicy(dataset=dataset)


# --- drift -----------------------------------------------------------------------------------------------------


def drift_reference(*, dataset: Dataset) -> tuple[ModelVersion | None, dict[str, list[float]], int, int | None]:
    """Features of the images (and label boxes) of the production model's training version; also the number of
    its images and the version's id."""
    model = production_model(dataset)
    version_id = model.run.dataset_version_id if model and model.run_id and model.run else None
    if version_id is None:
        return model, {}, 0, None
    rows = list(
        VersionItem.objects.filter(version_id=version_id).values_list(
            "image_id",
            "image__brightness",
            "image__contrast",
            "image__sharpness",
            "image__color_histogram",
            "boxes",
            "image__width",
            "image__height",
        )
    )
    features = statistics.image_feature_values([r[1:5] for r in rows])
    features.update(statistics.box_feature_values((b.get("box"), r[6], r[7]) for r in rows for b in (r[5] or [])))
    # Telemetry reports the same image statistics the server computes at ingestion.
    features["telemetry_brightness"] = list(features["brightness"])
    features["telemetry_contrast"] = list(features["contrast"])
    return model, features, len(rows), version_id


def drift_window(
    *, dataset: Dataset, version_id: int, since: datetime, until: datetime
) -> tuple[list[tuple], list[tuple]]:
    """What robots saw in a period: their uploaded images outside the reference version (id, serial, brightness,
    contrast, sharpness, histogram, status, width, height) and the newest telemetry (robot_id, brightness,
    contrast, detections)."""
    images = list(
        Image.objects.filter(dataset=dataset, source__in=ROBOT_SOURCES, uploaded_at__gt=since, uploaded_at__lte=until)
        .exclude(id__in=VersionItem.objects.filter(version_id=version_id).values("image_id"))
        .values_list(
            "id", "robot_serial", "brightness", "contrast", "sharpness", "color_histogram", "status", "width", "height"
        )
    )
    telemetry = list(
        TelemetryRecord.objects.filter(dataset=dataset, captured_at__gt=since, captured_at__lte=until)
        .order_by("-captured_at")
        .values_list("robot_id", "brightness", "contrast", "detections")[:TELEMETRY_DRIFT_SAMPLE]
    )
    return images, telemetry


# --- feedback and the canary guard ---------------------------------------------------------------------------


def feedback_model_id(meta: dict, robot_running_model_id: int | None, valid_model_ids: set[int]) -> int | None:
    """Which model a feedback upload blames: the one the agent says it ran (meta), else what the robot reports."""
    for key in ("model_id", "model"):
        value = (meta or {}).get(key)
        if isinstance(value, int) and value in valid_model_ids:
            return value
        if isinstance(value, str) and value.isdigit() and int(value) in valid_model_ids:
            return int(value)
    return robot_running_model_id if robot_running_model_id in valid_model_ids else None


def feedback_reason(meta: dict) -> str:
    reason = (meta or {}).get("reason") or "unspecified"
    return str(reason)[:40]


def feedback_by_model(*, dataset: Dataset, since: datetime, until: datetime) -> dict[int | None, int]:
    """Feedback uploads of a period counted per model they blame (raw rows)."""
    rows = list(
        Image.objects.filter(
            dataset=dataset, source=Image.Source.FEEDBACK, uploaded_at__gte=since, uploaded_at__lte=until
        ).values_list("robot_serial", "meta")
    )
    running = dict(Robot.objects.filter(serial__in={s for s, _ in rows if s}).values_list("serial", "running_model_id"))
    valid = set(ModelVersion.objects.filter(dataset=dataset).values_list("id", flat=True))
    counts: dict[int | None, int] = defaultdict(int)
    for serial, meta in rows:
        counts[feedback_model_id(meta, running.get(serial), valid)] += 1
    return counts


def model_field_metrics(*, dataset: Dataset, model_id: int, since: datetime, until: datetime) -> dict:
    """Frames, detection rate, mean top confidence and feedback per frame of one model over a period (raw rows)."""
    totals = TelemetryRecord.objects.filter(
        dataset=dataset, model_id=model_id, captured_at__gte=since, captured_at__lte=until
    ).aggregate(
        frames=Count("id"),
        with_detection=Count("id", filter=Q(detection_count__gt=0)),
        confidence=Avg("top_confidence"),
    )
    frames = totals["frames"] or 0
    return {
        "model_id": model_id,
        "frames": frames,
        "detection_rate": (totals["with_detection"] / frames) if frames else None,
        "mean_confidence": totals["confidence"],
        "feedback": 0,
        "feedback_rate": None,
    }


# --- production performance -----------------------------------------------------------------------------------


def performance_policy_for(dataset: Dataset) -> PerformancePolicy:
    """The dataset's performance policy, or the defaults (unsaved) when none was set in the admin."""
    return PerformancePolicy.objects.filter(dataset=dataset).first() or PerformancePolicy(dataset=dataset)


def production_periods(*, dataset: Dataset, model_id: int) -> tuple[datetime | None, Deployment | None]:
    """When the model first went live in production, and the production deployment of another model before it."""
    history = Deployment.objects.filter(dataset=dataset, channel=Deployment.Channel.PRODUCTION, model__isnull=False)
    first = history.filter(model_id=model_id).order_by("created_at", "id").first()
    if first is None:
        return None, None
    previous = history.filter(created_at__lt=first.created_at).exclude(model_id=model_id).order_by("-created_at")
    return first.created_at, previous.select_related("model").first()


def model_frame_at(*, dataset: Dataset, model_id: int, since: datetime, position: int) -> datetime | None:
    """When the model's frame number ``position`` (0-based, fleet-wide, in capture order) since ``since`` was
    captured; None while it has fewer frames (a young model's own baseline is its first frames, counted)."""
    found = list(
        TelemetryRecord.objects.filter(dataset=dataset, model_id=model_id, captured_at__gte=since)
        .order_by("captured_at", "id")
        .values_list("captured_at", flat=True)[position : position + 1]
    )
    return found[0] if found else None


def _rates(frames: int, with_detection: int, confidence: float | None, feedback: int) -> dict:
    return {
        "frames": frames,
        "detection_rate": with_detection / frames if frames else None,
        "mean_confidence": confidence,
        "feedback": feedback,
        "feedback_rate": feedback / frames if frames else None,
    }


def feedback_by_robot(*, dataset: Dataset, model_id: int, since: datetime, until: datetime) -> dict[int | None, int]:
    """Feedback uploads blaming one model in a period, per robot id and fleet-wide (key None)."""
    rows = list(
        Image.objects.filter(
            dataset=dataset, source=Image.Source.FEEDBACK, uploaded_at__gte=since, uploaded_at__lt=until
        ).values_list("robot_serial", "meta")
    )
    robots = {
        serial: (rid, running)
        for serial, rid, running in Robot.objects.filter(serial__in={s for s, _ in rows if s}).values_list(
            "serial", "id", "running_model_id"
        )
    }
    counts: dict[int | None, int] = defaultdict(int)
    for serial, meta in rows:
        robot_id, running = robots.get(serial, (None, None))
        if feedback_model_id(meta, running, {model_id}) == model_id:
            counts[None] += 1
            if robot_id:
                counts[robot_id] += 1
    return counts


def model_metrics_by_robot(*, dataset: Dataset, model_id: int, since: datetime, until: datetime) -> dict:
    """Frames, detection rate, mean top confidence and feedback per frame of one model in a period, per robot id and
    fleet-wide (key None): from raw telemetry while it is kept, else from the hourly buckets of whole hours."""
    raw_kept_since = timezone.now() - timedelta(days=settings.MONITORING_RAW_RETENTION_DAYS)
    feedback = feedback_by_robot(dataset=dataset, model_id=model_id, since=since, until=until)
    out = {}
    if since >= raw_kept_since:
        rows = (
            TelemetryRecord.objects.filter(
                dataset=dataset, model_id=model_id, captured_at__gte=since, captured_at__lt=until
            )
            .values("robot_id")
            .annotate(
                frames=Count("id"),
                with_detection=Count("id", filter=Q(detection_count__gt=0)),
                confidence_sum=Sum("top_confidence"),
                confidence_count=Count("top_confidence"),
            )
        )
    else:
        rows = (
            HourlyMetric.objects.filter(
                dataset=dataset, model_id=model_id, robot__isnull=False, hour__gte=since, hour__lt=until
            )
            .values("robot_id")
            .annotate(
                frames=Sum("frames"),
                with_detection=Sum("frames_with_detection"),
                confidence_sum=Sum("confidence_sum"),
                confidence_count=Sum("confidence_count"),
            )
        )
    fleet = {"frames": 0, "with_detection": 0, "confidence_sum": 0.0, "confidence_count": 0}
    for row in rows.order_by():
        for name in fleet:
            fleet[name] += row[name] or 0
        out[row["robot_id"]] = row
    out[None] = fleet
    return {
        robot_id: _rates(
            row["frames"] or 0,
            row["with_detection"] or 0,
            row["confidence_sum"] / row["confidence_count"] if row["confidence_count"] else None,
            feedback.get(robot_id, 0),
        )
        for robot_id, row in out.items()
    }


def open_alerts(*, dataset: Dataset | None = None, kind: str | None = None) -> list[Alert]:
    """Alerts nobody has acknowledged and that have not resolved themselves, newest first."""
    alerts = Alert.objects.filter(Alert.OPEN).select_related("dataset", "robot")
    if dataset is not None:
        alerts = alerts.filter(dataset=dataset)
    if kind is not None:
        alerts = alerts.filter(kind=kind)
    return list(alerts.order_by("-last_seen", "-id"))


def shadow_field_sums(shadow_model_id: int, *, live_model_id: int | None = None, by: str | None = None) -> list[dict]:
    """The ShadowHourly counters of ``shadow_model_id`` summed (beside ``live_model_id`` only, when given): with ``by``
    None one row, the fleet on all frames, with ``latest`` (its newest bucket's update); "robot": per robot on all
    frames; "slice": the fleet per lighting slice; "hour": the fleet on all frames per hour (the answer installed in
    ``apps.deployments.hooks``)."""
    rows = ShadowHourly.objects.filter(shadow_model_id=shadow_model_id)
    if live_model_id:
        rows = rows.filter(model_id=live_model_id)
    sums = {name: Sum(name) for name in ShadowHourly.COUNTERS}
    if by is None:
        return [rows.filter(robot__isnull=True, slice="").aggregate(**sums, latest=Max("updated_at"))]
    if by == "robot":
        rows = rows.filter(robot__isnull=False, slice="")
    elif by == "slice":
        rows = rows.filter(robot__isnull=True).exclude(slice="")
    else:
        rows = rows.filter(robot__isnull=True, slice="")
    return list(rows.values(by).annotate(**sums).order_by(by))
