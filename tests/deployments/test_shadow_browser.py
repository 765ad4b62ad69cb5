"""The shadow pages in a real browser: start a shadow from the promote page, the evidence on the deployments page
(numbers, per robot and slice, the chart, the disagreement gallery with both models' boxes, the field comparison),
and end it."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.datasets.models import Image
from apps.deployments import services
from apps.deployments.models import Deployment
from apps.monitoring import services as monitoring
from tests.builders import dataset_row, make_image, make_model, make_robot
from tests.conftest import log_in

SHOTS = "var/screenshots"
BOX = [10.0, 10.0, 20.0, 20.0]
ELSEWHERE = [50.0, 30.0, 20.0, 20.0]


def _evidence(dataset, live, candidate):
    """Six shadow frames from one robot (agreeing on half) and two disagreement frames, one labelled."""
    robot, _ = make_robot(serial="00e2ad01", name="Vector-AD01")
    at = timezone.now() - timedelta(minutes=2)
    here = {"label": "vector", "confidence": 0.9, "box": BOX}
    there = {"label": "vector", "confidence": 0.7, "box": ELSEWHERE}
    records = [
        {
            "captured_at": at.isoformat(),
            "latency_ms": 40.0,
            "detections": [here],
            "image_stats": {"brightness": 0.2 if n % 2 else 0.5},
            "shadow": {"model_id": candidate.pk, "latency_ms": 52.0, "detections": [here if n % 2 else there]},
        }
        for n in range(6)
    ]
    services.telemetry_ingest(robot_id=robot.pk, dataset=dataset, model_id=live.pk, records=records)
    monitoring.telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))
    for seed, truth in ((1, [{"class_id": 0, "box": ELSEWHERE}]), (2, None)):
        meta = {
            "model_id": live.pk,
            "predictions": [here],
            "shadow": {"model_id": candidate.pk, "predictions": [there]},
            "disagreement": 1.2,
        }
        kwargs = {"boxes": truth, "status": "approved"} if truth else {}
        make_image(dataset, seed=seed, source=Image.Source.SHADOW_DISAGREEMENT, meta=meta, **kwargs)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_start_a_shadow_see_its_evidence_and_end_it(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset = dataset_row("shadowpage")
    live, candidate = make_model(dataset, 1), make_model(dataset, 2)
    services.model_promote(model=live, channel="production", reason="first")
    os.makedirs(SHOTS, exist_ok=True)
    page = open_browser()
    log_in(page, live_server, "eng")

    # The promote page offers to run the candidate in shadow first.
    page.goto(f"{live_server.url}/models/{candidate.pk}/promote/")
    assert "No shadow frames of v2 yet" in page.text_content("#shadow-panel")
    page.click("#shadow-start")
    page.fill("#id_shadow_percent", "50")
    page.fill("#id_reason", "see it in the rooms first")
    page.screenshot(path=f"{SHOTS}/shadow-start-form.png", full_page=True)
    page.click("button:has-text('Confirm')")
    assert page.url.endswith(f"/deployments/{dataset.slug}/")
    assert "v2 on 50% of robots" in page.text_content("#shadow-live")
    shadow = Deployment.objects.get(dataset=dataset, channel="shadow", is_live=True)
    assert shadow.model_id == candidate.pk and shadow.shadow_percent == 50
    # A failed verdict beside a shadow start is information, not an override: nothing acts on a shadow.
    Deployment.objects.filter(pk=shadow.pk).update(gate_passed=False)
    page.reload()
    row = page.text_content(f'#history tr[data-deployment-id="{shadow.pk}"]')
    assert "fail (shadow: for information)" in row and "overridden" not in row

    # Robots report; the deployments page shows the evidence.
    _evidence(dataset, live, candidate)
    page.reload()
    summary = page.text_content("#shadow-summary")
    assert "6" in summary and "50%" in summary and "52.0 ms" in summary and "40.0 ms" in summary
    assert "00e2ad01" in page.text_content("#shadow-robots") or "Vector-AD01" in page.text_content("#shadow-robots")
    assert "lighting:dark" in page.text_content("#shadow-slices")
    page.wait_for_function("window.Chart && Chart.getChart(document.getElementById('shadow-chart'))")
    assert page.locator("#shadow-gallery figure").count() == 2
    assert page.locator("#shadow-gallery rect.box-live").count() == 2
    assert page.locator("#shadow-gallery rect.box-shadow").count() == 2
    field = page.text_content("#shadow-field")
    assert "1 labelled frame" in field and "1.00" in field and "0.00" in field
    page.screenshot(path=f"{SHOTS}/shadow-evidence.png", full_page=True)
    # Each frame links to its image page and to labelling it.
    first = page.locator("#shadow-gallery figure").first
    image_id = first.get_attribute("data-image-id")
    assert first.locator("a.shadow-frame-link").get_attribute("href").endswith(f"?image={image_id}")
    first.locator("a.shadow-frame-label").click()
    assert f"image={image_id}" in page.url and "/label/" in page.url
    page.go_back()

    # End it: recorded in the history.
    page.click("#shadow-end")
    page.fill("#id_reason", "seen enough")
    page.screenshot(path=f"{SHOTS}/shadow-end-form.png", full_page=True)
    page.click("button:has-text('Confirm')")
    assert page.url.endswith(f"/deployments/{dataset.slug}/")
    assert page.locator("#shadow-live").count() == 0
    history = page.text_content("#history")
    assert "shadow" in history and "seen enough" in history
    assert page.js_errors == []
