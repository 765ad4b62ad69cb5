"""The home dashboard per role, the error pages inside the layout, the navigation's active entry, and the API docs
working offline, in a real browser (Debian's Chromium through Playwright)."""

import logging
import os
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from apps.datasets.models import Image
from apps.deployments.models import Robot
from apps.monitoring import services
from apps.monitoring.models import Alert
from apps.training.models import TrainingRun
from tests.builders import dataset_row, deployment_row, image_rows, model_row, robot_row
from tests.conftest import TEST_PASSWORD, log_in
from vectormlops.log_filters import PlainForbidden

SHOTS = "var/screenshots"


def _seed():
    dataset = dataset_row("dash")
    image_rows(dataset, [{"status": Image.Status.UNLABELED}] * 2 + [{"status": Image.Status.SUBMITTED}])
    production = model_row(dataset, 1)
    deployment_row(dataset, production)
    candidate = model_row(dataset, 2)
    run = TrainingRun.objects.create(dataset=dataset, base="yolov8n.yaml", status=TrainingRun.Status.TRAINING)
    robot = robot_row("00e2da5b", running=production)
    Robot.objects.filter(pk=robot.pk).update(last_seen_at=timezone.now() - timedelta(days=2))
    alert, _ = services.alert_raise(
        dataset=dataset,
        kind="drift",
        robot=robot,
        message="Robot Vector-da5b sees much darker images than the model was trained on: brightness 0.21 vs 0.48.",
    )
    services.alert_raise(
        dataset=dataset,
        kind="performance",
        message="The fleet is doing worse with model v1 than in its first days in production.",
    )
    return dataset, candidate, run, alert


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_shows_each_role_what_waits_for_it(open_browser, live_server, make_user):
    make_user("ann", "annotator")
    make_user("eng", "ml_engineer")
    dataset, candidate, run, alert = _seed()
    os.makedirs(SHOTS, exist_ok=True)

    page = open_browser()
    log_in(page, live_server, "ann")
    labeling = page.text_content("#waiting-labeling")
    assert "Label 2 images" in labeling and "1 waiting for review" in labeling
    assert page.locator("#waiting-alerts").count() == 0 and page.locator("#waiting-runs").count() == 0
    page.click("text=Label 2 images")
    assert page.url.endswith(f"/label/{dataset.slug}/")

    page = open_browser()
    log_in(page, live_server, "eng")
    page.screenshot(path=f"{SHOTS}/dashboard-ml-engineer.png", full_page=True)
    assert "Review 1" in page.text_content("#waiting-labeling")
    assert "much darker images" in page.text_content("#waiting-alerts")
    assert "v2" in page.text_content("#waiting-candidates") and "v1" not in page.text_content("#waiting-candidates")
    assert f"Run #{run.id}" in page.text_content("#waiting-runs")
    assert "00e2da5b" in page.text_content("#waiting-robots")
    # Each kind of alert has one badge colour, on the dashboard and on the alert's own page alike.
    home_badges = {
        kind: page.get_attribute(f"#waiting-alerts .alert-kind:text-is('{kind}')", "class")
        for kind in ("drift", "performance")
    }
    assert "text-bg-primary" in home_badges["performance"] and "text-bg-warning" in home_badges["drift"]
    page.click(f"#waiting-alerts a[href='/monitoring/alerts/{alert.id}/']")
    page.wait_for_selector("text=See the images")
    assert page.get_attribute(".alert-kind", "class") == home_badges["drift"]
    performance = Alert.objects.get(kind="performance")
    page.goto(f"{live_server.url}/monitoring/alerts/{performance.id}/")
    assert page.get_attribute(".alert-kind", "class") == home_badges["performance"]
    page.goto(f"{live_server.url}/monitoring/")
    assert page.get_attribute(".alert-kind:text-is('performance')", "class") == home_badges["performance"]
    page.goto(f"{live_server.url}/monitoring/alerts/{alert.id}/")
    page.wait_for_selector("text=See the images")
    assert page.js_errors == []
    page.click("text=See the images")
    assert f"/datasets/{dataset.slug}/" in page.url and "robot=00e2da5b" in page.url
    page.goto(f"{live_server.url}/")
    page.click(f"#waiting-candidates a[href='/models/{candidate.id}/promote/']")
    assert page.url.endswith(f"/models/{candidate.id}/promote/")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_error_pages_keep_the_navigation_and_say_what_to_do(open_browser, live_server, make_user):
    make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")

    response = page.goto(f"{live_server.url}/datasets/no-such-dataset/")
    assert response.status == 404
    assert page.locator("nav .navbar-brand").count() == 1 and page.locator("nav >> text=Datasets").count() == 1
    assert "There is nothing at this address" in page.text_content("main")
    page.screenshot(path=f"{SHOTS}/error-404.png", full_page=True)

    response = page.goto(f"{live_server.url}/monitoring/")
    assert response.status == 403
    assert "does not have the role this page needs" in page.text_content("main")
    assert page.locator("nav >> text=Label").count() == 1
    page.click("text=Back to your dashboard")
    assert page.url == f"{live_server.url}/"


@pytest.mark.django_db
def test_an_ordinary_403_logs_one_line_not_a_traceback(client, make_user, caplog):
    make_user("ann", "annotator")
    client.login(username="ann", password=TEST_PASSWORD)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/monitoring/")
    assert response.status_code == 403 and b"does not have the role" in response.content
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == "Forbidden (Permission denied): /monitoring/"
    # The console handler (settings.LOGGING) wrote it as one line: its filter dropped the PermissionDenied traceback.
    console = next(h for h in logging.getLogger().handlers if any(isinstance(f, PlainForbidden) for f in h.filters))
    assert console.filter(record) and record.exc_info is None
    assert console.format(record) == "Forbidden (Permission denied): /monitoring/"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_navigation_highlights_the_page_one_is_on(open_browser, live_server, make_user):
    make_user("rev", "reviewer")
    page = open_browser()
    log_in(page, live_server, "rev")
    page.goto(f"{live_server.url}/labeling/stats/")
    assert page.locator("nav a.nav-link.active").count() == 0
    page.goto(f"{live_server.url}/label/")
    assert page.locator("nav a.nav-link.active").all_text_contents() == ["Label"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_api_docs_load_without_any_request_leaving_the_machine(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    page = open_browser()
    log_in(page, live_server, "eng")
    hosts = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).hostname))
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag-section")
    page.wait_for_load_state("networkidle")
    assert "VectorMLOps API" in page.text_content(".swagger-ui .info .title")
    assert hosts and set(hosts) <= {"localhost", "127.0.0.1"}, set(hosts)
    assert page.js_errors == []
    page.screenshot(path=f"{SHOTS}/api-docs.png")
