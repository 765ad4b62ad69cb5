"""Monitoring's writes, by sub-domain: aggregation (hourly buckets, pruning), alerts, drift, the canary guard.

Tasks, views, the API and the admin call these; reads live in ``apps.monitoring.selectors`` and the statistics
behind drift in ``apps.monitoring.statistics``.
"""

from apps.monitoring.services.aggregation import telemetry_aggregate, telemetry_prune
from apps.monitoring.services.alerts import alert_acknowledge, alert_raise
from apps.monitoring.services.canary_guard import canary_guard_check
from apps.monitoring.services.drift import drift_compute, drift_reports_prune

__all__ = [
    "alert_acknowledge",
    "alert_raise",
    "canary_guard_check",
    "drift_compute",
    "drift_reports_prune",
    "telemetry_aggregate",
    "telemetry_prune",
]
