"""Monitoring pages (ml_engineer): an overview of datasets, one page per dataset (or one robot of it) with charts,
drift, alerts, the fleet and the version skew, the open alerts of all datasets, and one page per alert."""

from datetime import timedelta

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.datasets.models import Dataset
from apps.deployments.selectors import live_deployments
from apps.monitoring import selectors, services
from apps.monitoring.models import Alert
from apps.monitoring.presentation import alert_links
from vectormlops.errors import NotFound
from vectormlops.permissions import ML_ENGINEER, role_required

PERIODS = {24: "24 hours", 7 * 24: "7 days", 30 * 24: "30 days"}


@role_required(ML_ENGINEER)
def home(request):
    """Datasets with their live models, open alerts and the last day's frames."""
    rows = selectors.datasets_overview(since=timezone.now() - timedelta(hours=24))
    return render(request, "monitoring/home.html", {"rows": rows, "open_alerts": selectors.open_alerts()})


def _found(lookup, *args):
    """A selector's answer on a page: its domain 404 becomes the page's 404."""
    try:
        return lookup(*args)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _alert_context(alert: Alert) -> dict:
    return {
        "alert": alert,
        "links": alert_links(alert),
        "report": selectors.alert_drift_report(alert) if alert.kind == Alert.Kind.DRIFT else None,
    }


@role_required(ML_ENGINEER)
def dataset_detail(request, slug: str):
    dataset = get_object_or_404(Dataset, slug=slug)
    try:
        hours = int(request.GET.get("hours", 7 * 24))
    except ValueError:
        hours = 7 * 24
    hours = hours if hours in PERIODS else 7 * 24
    robot = None
    if request.GET.get("robot"):
        robot = _found(selectors.robot_by_serial, request.GET["robot"])
    now = timezone.now()
    since = now - timedelta(hours=hours)
    live = live_deployments(dataset)
    metrics = selectors.field_metrics(dataset=dataset, since=since, until=now, robot=robot)
    context = {
        "dataset": dataset,
        "hours": hours,
        "periods": PERIODS,
        "robot": robot,
        "metrics": metrics,
        "drift_reports": selectors.latest_drift_reports(dataset=dataset),
        "alerts": [_alert_context(a) for a in selectors.dataset_alerts(dataset=dataset)],
        "fleet": selectors.fleet_table(dataset=dataset, since=since),
        "skew": selectors.version_skew(dataset=dataset, seen_since=now - timedelta(days=1)),
        "production": live.get("production"),
        "canary": live.get("canary"),
        "policy": selectors.canary_policy_for(dataset),
        "performance_policy": selectors.performance_policy_for(dataset),
    }
    return render(request, "monitoring/dataset.html", context)


@role_required(ML_ENGINEER)
def alert_detail(request, alert_id: int):
    """One alert: its sentence, what it links to and the statistics behind it (notifications link here)."""
    alert = _found(selectors.alert_by_id, alert_id)
    return render(request, "monitoring/alert.html", _alert_context(alert))


@role_required(ML_ENGINEER)
def alert_fragment(request, alert_id: int):
    """The alert as the dataset page shows it; the page's script swaps it in when an event announces a change."""
    alert = _found(selectors.alert_by_id, alert_id)
    return render(request, "monitoring/_alert.html", _alert_context(alert))


@require_POST
@role_required(ML_ENGINEER)
def alert_acknowledge(request, alert_id: int):
    """The page's acknowledge button without JavaScript (the script uses the JSON API)."""
    alert = _found(selectors.alert_by_id, alert_id)
    services.alert_acknowledge(alert=alert, user=request.user)
    messages.success(request, f"Alert {alert.id} acknowledged.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("monitoring:dataset", args=[alert.dataset.slug])
    return redirect(target)
