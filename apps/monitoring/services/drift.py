"""Drift: compare what robots saw with the production model's training images, store reports, raise alerts and
queue the most unusual images for labeling."""

import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.datasets.models import Dataset, Image
from apps.datasets.services import images_prioritize
from apps.deployments.models import Robot
from apps.monitoring import statistics
from apps.monitoring.models import Alert, DriftReport
from apps.monitoring.presentation import drift_sentence, scope_subject
from apps.monitoring.selectors import drift_reference, drift_window
from apps.monitoring.services.alerts import alert_raise

log = logging.getLogger(__name__)

DRIFT_LABEL_PRIORITY = 10


def _queue_for_labeling(images: list[tuple], reference: dict, drifted: list[str]) -> list[int]:
    """Raise the labeling priority of the current images most unlike the reference on the drifted features."""
    limit = settings.MONITORING_DRIFT_LABEL_SAMPLE
    if not images or limit <= 0:
        return []
    scores = statistics.labeling_scores(images, reference, drifted)
    order = np.argsort(-scores, kind="stable")[:limit]
    ids = [images[int(i)][0] for i in order]
    images_prioritize(image_ids=ids, priority=DRIFT_LABEL_PRIORITY)
    return ids


def drift_compute(*, dataset: Dataset, now: datetime | None = None) -> list[DriftReport]:
    """Compare what robots saw in the last MONITORING_DRIFT_WINDOW_HOURS with the production model's training
    images, fleet-wide and per robot; store a DriftReport for each scope with enough data, raise a drift alert
    naming the offending features, and queue a sample of the drifting images for labeling."""
    now = now or timezone.now()
    window_start = now - timedelta(hours=settings.MONITORING_DRIFT_WINDOW_HOURS)
    model, reference, reference_size, version_id = drift_reference(dataset=dataset)
    if not reference or reference_size < settings.MONITORING_DRIFT_MIN_SAMPLES:
        log.info("drift of %s skipped: no production model with a large enough training version", dataset.slug)
        return []
    images, telemetry = drift_window(dataset=dataset, version_id=version_id, since=window_start, until=now)
    camera = [(i[7], i[8]) for i in images if i[1]]
    frame = Counter(camera).most_common(1)[0][0] if camera else statistics.VECTOR_FRAME
    robots_by_serial = {r.serial: r for r in Robot.objects.filter(serial__in={i[1] for i in images if i[1]})}
    robots_by_id = {r.id: r for r in Robot.objects.filter(id__in={t[0] for t in telemetry})}
    robots_by_serial.update({r.serial: r for r in robots_by_id.values()})

    images_by_serial, telemetry_by_robot = defaultdict(list), defaultdict(list)
    for row in images:
        images_by_serial[row[1]].append(row)
    for row in telemetry:
        telemetry_by_robot[row[0]].append(row)
    scopes: list[tuple[Robot | None, list, list]] = [(None, images, telemetry)]
    for serial, robot in sorted(robots_by_serial.items()):
        scopes.append((robot, images_by_serial[serial], telemetry_by_robot[robot.id]))

    reports = []
    for robot, scope_images, scope_telemetry in scopes:
        current = statistics.current_features(scope_images, scope_telemetry, frame)
        results = statistics.drift_compare(
            reference,
            current,
            min_samples=settings.MONITORING_DRIFT_MIN_SAMPLES,
            psi_threshold=settings.MONITORING_DRIFT_PSI_THRESHOLD,
            p_value=settings.MONITORING_DRIFT_P_VALUE,
        )
        if not any(r["test"] != "insufficient_data" for r in results):
            continue
        drifted = [r["feature"] for r in results if r.get("drifted")]
        with transaction.atomic():
            report = DriftReport.objects.create(
                dataset=dataset,
                robot=robot,
                model=model,
                computed_at=now,
                window_start=window_start,
                reference_size=reference_size,
                current_size=len(scope_images) + len(scope_telemetry),
                features=results,
                drifted=bool(drifted),
                drifted_features=drifted,
            )
            if drifted:
                _, value = statistics.drift_message("", results)
                message = drift_sentence(scope_subject(robot), results)
                unlabeled = [i for i in scope_images if i[6] == Image.Status.UNLABELED]
                queued = _queue_for_labeling(unlabeled, reference, drifted)
                alert_raise(
                    dataset=dataset,
                    kind=Alert.Kind.DRIFT,
                    robot=robot,
                    value=value,
                    threshold=settings.MONITORING_DRIFT_PSI_THRESHOLD,
                    message=message,
                    details={"report_id": report.id, "features": drifted, "queued_for_labeling": queued},
                    now=now,
                )
        reports.append(report)
    return reports


def drift_reports_prune(*, older_than: datetime) -> int:
    """Delete drift reports computed before ``older_than`` (alerts keep their own message); returns rows deleted."""
    return DriftReport.objects.filter(computed_at__lt=older_than).delete()[0]
