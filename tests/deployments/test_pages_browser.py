"""The deployments pages in a real browser: the fleet with links to monitoring, the rollback page with nothing to
roll back to (no Confirm), and the styled promote, canary and rollback forms."""

import os

import pytest

from tests.builders import dataset_row, deployment_row, model_row, robot_row
from tests.conftest import log_in

SHOTS = "var/screenshots"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_fleet_rollback_without_target_and_styled_forms(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset = dataset_row("fleetpage")
    first, second = model_row(dataset, 1), model_row(dataset, 2)
    deployment_row(dataset, first)
    robot_row("00e2f1e7", running=first)
    os.makedirs(SHOTS, exist_ok=True)
    page = open_browser()
    log_in(page, live_server, "eng")

    # The fleet: robot, the model it runs, last seen, and a way to its monitoring.
    page.goto(f"{live_server.url}/deployments/")
    fleet = page.text_content("#fleet")
    assert "00e2f1e7" in fleet and "fleetpage v1" in fleet
    page.screenshot(path=f"{SHOTS}/deployments-home.png", full_page=True)
    page.click("#fleet >> text=Monitoring")
    assert page.url.endswith(f"/monitoring/{dataset.slug}/?robot=00e2f1e7")
    assert "robot Vector-f1e7" in page.text_content("h1")

    # The first model in production: nothing to roll back to, so no Confirm.
    page.goto(f"{live_server.url}/deployments/{dataset.slug}/rollback/")
    assert "nothing to roll back to" in page.text_content("#nothing-to-do")
    assert page.locator("button:has-text('Confirm')").count() == 0
    page.screenshot(path=f"{SHOTS}/rollback-nothing.png", full_page=True)

    # The promote form is styled (Bootstrap controls) and leads back to the deployments page.
    page.goto(f"{live_server.url}/models/{second.id}/promote/?channel=canary&percent=10")
    assert page.locator("select#id_channel.form-select").count() == 1
    assert page.locator("input#id_canary_percent.form-control").count() == 1
    assert page.locator("textarea#id_reason.form-control").count() == 1
    page.screenshot(path=f"{SHOTS}/promote-form.png", full_page=True)
    page.click("text=Cancel")
    assert page.url.endswith(f"/deployments/{dataset.slug}/")

    # With a canary live, ending it offers styled radio buttons.
    deployment_row(dataset, second, channel="canary", percent=10)
    page.goto(f"{live_server.url}/deployments/{dataset.slug}/canary/end/")
    assert page.locator("input[type=radio].form-check-input").count() == 2
    page.screenshot(path=f"{SHOTS}/canary-end-form.png", full_page=True)
    assert page.js_errors == []
