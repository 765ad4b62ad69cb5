"""Monitoring pages (ml_engineer): an overview of datasets, and one page per dataset with charts, drift, alerts,
the fleet and the version skew."""

from datetime import timedelta

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.datasets.models import Dataset
from apps.deployments.selectors import live_deployments
from apps.monitoring import selectors, services
from apps.monitoring.models import Alert
from vectormlops.permissions import ML_ENGINEER, role_required


@role_required(ML_ENGINEER)
def home(request):
    """Datasets with their live models, open alerts and the last day's frames."""
    rows = selectors.datasets_overview(since=timezone.now() - timedelta(hours=24))
    return render(request, "monitoring/home.html", {"rows": rows})


@role_required(ML_ENGINEER)
def dataset_detail(request, slug: str):
    dataset = get_object_or_404(Dataset, slug=slug)
    try:
        hours = max(1, min(24 * 90, int(request.GET.get("hours", 7 * 24))))
    except ValueError:
        hours = 7 * 24
    now = timezone.now()
    since = now - timedelta(hours=hours)
    live = live_deployments(dataset)
    context = {
        "dataset": dataset,
        "hours": hours,
        "metrics": selectors.field_metrics(dataset=dataset, since=since, until=now),
        "drift_reports": selectors.latest_drift_reports(dataset=dataset),
        "alerts": selectors.dataset_alerts(dataset=dataset),
        "fleet": selectors.fleet_table(dataset=dataset, since=since),
        "skew": selectors.version_skew(dataset=dataset, seen_since=now - timedelta(days=1)),
        "production": live.get("production"),
        "canary": live.get("canary"),
        "policy": selectors.canary_policy_for(dataset),
    }
    return render(request, "monitoring/dataset.html", context)


@require_POST
@role_required(ML_ENGINEER)
def alert_acknowledge(request, alert_id: int):
    """The page's acknowledge button without JavaScript (the script uses the JSON API)."""
    alert = get_object_or_404(Alert.objects.select_related("dataset"), pk=alert_id)
    services.alert_acknowledge(alert=alert, user=request.user)
    messages.success(request, f"Alert {alert.id} acknowledged.")
    return redirect("monitoring:dataset", slug=alert.dataset.slug)
