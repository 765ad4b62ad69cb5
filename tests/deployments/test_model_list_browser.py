"""The model list in a real browser: each lifecycle status has a badge colour of its own."""

import os

import pytest

from apps.deployments import services
from tests.builders import dataset_row, make_model
from tests.conftest import log_in

SHOTS = "var/screenshots"


def _badge_colour(page, status: str) -> str:
    return page.eval_on_selector(f"span.badge.status-{status}", "el => getComputedStyle(el).backgroundColor")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_each_lifecycle_status_has_its_own_badge_colour(open_browser, live_server, make_user):
    # Given a production, a canary, a shadow and a candidate model of one dataset
    make_user("eng", "ml_engineer")
    dataset = dataset_row("badges")
    live, canary, shadow, _candidate = (make_model(dataset, n) for n in (1, 2, 3, 4))
    services.model_promote(model=live, channel="production", reason="first")
    services.model_promote(model=canary, channel="canary", canary_percent=10, reason="try it")
    services.model_promote(model=shadow, channel="shadow", shadow_percent=100, reason="watch it")
    os.makedirs(SHOTS, exist_ok=True)

    # When an ML engineer opens the model list
    page = open_browser()
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/models/")
    page.screenshot(path=f"{SHOTS}/model-list-badges.png", full_page=True)

    # Then the shadow model's badge reads "shadow" in a colour no other lifecycle status uses
    assert page.text_content("span.badge.status-shadow").strip() == "shadow"
    colours = {status: _badge_colour(page, status) for status in ("production", "canary", "shadow", "candidate")}
    assert len(set(colours.values())) == 4, colours
    assert not page.js_errors
