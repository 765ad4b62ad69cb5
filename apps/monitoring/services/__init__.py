"""Monitoring's writes, by sub-domain: aggregation (hourly buckets, pruning), alerts, drift, the canary guard,
production performance, notifications.

Tasks, views, the API and the admin call these; reads live in ``apps.monitoring.selectors`` and the statistics
behind drift in ``apps.monitoring.statistics``.
"""

from apps.monitoring.services.aggregation import telemetry_aggregate, telemetry_prune
from apps.monitoring.services.alerts import alert_acknowledge, alert_raise, alert_resolve
from apps.monitoring.services.canary_guard import canary_guard_check
from apps.monitoring.services.drift import drift_compute, drift_reports_prune
from apps.monitoring.services.notifications import (
    alert_notify,
    alert_resolved_notify,
    deployment_notify,
    gate_decision_notify,
    notification_deliver,
    notify,
    run_failed_notify,
)
from apps.monitoring.services.performance import performance_check

__all__ = [
    "alert_acknowledge",
    "alert_notify",
    "alert_raise",
    "alert_resolved_notify",
    "alert_resolve",
    "canary_guard_check",
    "deployment_notify",
    "drift_compute",
    "drift_reports_prune",
    "gate_decision_notify",
    "notification_deliver",
    "notify",
    "performance_check",
    "run_failed_notify",
    "telemetry_aggregate",
    "telemetry_prune",
]
