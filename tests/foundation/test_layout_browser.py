"""Small layout and shell fixes seen in a real browser (Debian's Chromium through Playwright): the favicon, the
dataset page's header on a phone and its classes card on a 1024 px screen, and the deployments page's connection
badge, which says connected as soon as its event stream opens (not only after the first event)."""

import os

import httpx
import pytest
from django.conf import global_settings

from tests.builders import dataset_row, image_rows
from tests.conftest import log_in
from tests.faults import private_redis
from tests.live_web import Web

SHOTS = "var/screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _overflowing(page, selector: str) -> list[str]:
    """Descendants of ``selector`` (and itself) whose right edge is past the element's or the viewport's."""
    return page.evaluate(
        """(selector) => {
          const box = document.querySelector(selector).getBoundingClientRect();
          const limit = Math.min(box.right, document.documentElement.clientWidth) + 0.5;
          return [document.querySelector(selector), ...document.querySelectorAll(selector + ' *')]
            .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > limit)
            .map((el) => `${el.tagName}.${el.className} ${el.textContent.trim().slice(0, 30)}`);
        }""",
        selector,
    )


def test_the_favicon_is_served(live_server, open_browser, make_user):
    response = httpx.get(f"{live_server.url}/favicon.ico", follow_redirects=True)
    assert response.status_code == 200 and response.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon.endswith("/img/favicon.ico") and httpx.get(live_server.url + icon).status_code == 200


def test_the_dataset_header_fits_a_phone_and_the_classes_card_fits_1024(live_server, open_browser, make_user):
    make_user("eng", "ml_engineer")
    dataset = dataset_row("a-rather-long-dataset-slug-name", classes=("vector", "charging-station-cube", "person"))
    image_rows(dataset, [{}] * 3)
    os.makedirs(SHOTS, exist_ok=True)
    page = open_browser()
    log_in(page, live_server, "eng")
    for width in (1024, 360, 390, 768, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/datasets/{dataset.slug}/")
        page.screenshot(path=f"{SHOTS}/dataset-header-{width}.png", full_page=True)
        assert _overflowing(page, "#dataset-header") == [], width
        assert _overflowing(page, "#classes-card") == [], width
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), width
        assert page.locator("#classes-card button[value=delete]").first.is_visible()
    assert page.js_errors == []


@pytest.mark.slow
def test_the_live_updates_badge_says_connected_when_the_stream_opens(open_browser, make_user, settings, tmp_path):
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # the web server checks with Django's own hashers
    make_user("eng", "ml_engineer")
    dataset_row("badge")
    with private_redis(settings) as (redis_url, _server):
        web = Web(redis_url, tmp_path / "web.log").start()
        try:
            page = open_browser()
            log_in(page, web.server, "eng")
            page.goto(f"{web.url}/deployments/badge/")
            # Given no event yet, when the socket opens: the badge says so (it stayed grey until the first event).
            page.wait_for_function("VectorEvents.opens('deployments.badge') === 1")
            assert page.text_content("#live-status") == "live updates: connected"
            assert "text-bg-success" in page.get_attribute("#live-status", "class")
            # When the server goes away, the badge says it is reconnecting.
            web.kill()
            page.wait_for_function("document.getElementById('live-status').dataset.connected === 'false'")
            assert page.text_content("#live-status") == "live updates: reconnecting…"
            assert "text-bg-warning" in page.get_attribute("#live-status", "class")
        finally:
            web.stop()
