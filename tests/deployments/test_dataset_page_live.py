"""The deployments page of a dataset follows it live, through a real web server (daphne) and a private Valkey: a
promotion is on the page without a reload; when the web server dies and starts again, what changed meanwhile (a canary,
a gate decision) is on the page after it reconnects, and the server logs no traceback."""

import pytest
from django.conf import global_settings

from apps.deployments import services
from tests.builders import dataset_row, gate_decision_row, make_model
from tests.conftest import log_in
from tests.faults import private_redis
from tests.live_web import Web, in_thread

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOPIC = "deployments.fleet"


def test_the_deployments_page_updates_live_and_catches_up_after_the_server_was_down(
    open_browser, make_user, settings, tmp_path
):
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # the web server checks with Django's own hashers
    make_user("eng", "ml_engineer")
    dataset = dataset_row("fleet")
    v1, v2, v3 = (make_model(dataset, n) for n in (1, 2, 3))
    services.model_promote(model=v1, channel="production", reason="first model")
    with private_redis(settings) as (redis_url, _server):
        web = Web(redis_url, tmp_path / "web.log").start()
        try:
            page = open_browser()
            log_in(page, web.server, "eng")
            page.goto(f"{web.url}/deployments/fleet/")
            page.wait_for_function(f"VectorEvents.synced('{TOPIC}') === 1")
            assert page.evaluate("window.deploymentsSwaps || 0") == 0, "the first re-sync found nothing new to swap"
            assert page.locator(f"#model-{v1.pk}").count() == 1
            assert page.locator("#history tbody tr[data-deployment-id]").count() == 1

            # live: v2 replaces v1 in production
            in_thread(services.model_promote, model=v2, channel="production", reason="better on the kitchen robots")
            page.wait_for_selector(f"#model-{v2.pk}")
            assert page.evaluate("window.deploymentsSwaps") >= 1
            assert page.locator(f"#model-{v1.pk}").count() == 0
            assert "better on the kitchen robots" in page.text_content("#history tbody tr:first-child")
            assert page.text_content("#live-status") == "updated: production promote"
            assert page.evaluate(f"VectorEvents.opens('{TOPIC}')") == 1

            # the web server dies; meanwhile v3 is gated and goes live as a canary: nobody hears of it
            web.kill()
            gate_decision_row(v3, v2, passed=True, reasons=["v3 beats v2 on the test set"])
            in_thread(services.model_promote, model=v3, channel="canary", canary_percent=20, reason="try v3")
            web.start()

            page.wait_for_function(f"VectorEvents.synced('{TOPIC}') >= 2", timeout=90_000)
            assert page.evaluate(f"VectorEvents.opens('{TOPIC}')") >= 2
            canary = page.locator(".card", has_text="canary")
            assert f"v{v3.number}" in canary.text_content() and "at 20%" in canary.text_content()
            assert page.locator(f"#model-{v2.pk}").count() == 1, "production is still v2"
            assert "try v3" in page.text_content("#history tbody tr:first-child")
            assert page.locator("#history tbody tr[data-deployment-id]").count() == 3
            assert "v3 beats v2 on the test set" in page.text_content("details[data-decision-id]")
            assert page.locator("a", has_text="End canary").count() == 1

            # and events flow again: the canary ends, the page shows it
            in_thread(services.canary_end, dataset=dataset, promote=False, reason="enough")
            page.wait_for_selector("a:has-text('End canary')", state="detached")
            assert "nothing live" in page.locator(".card", has_text="canary").text_content()
            page.screenshot(path=str(tmp_path / "deployments-live.png"), full_page=True)
            assert page.js_errors == []
        finally:
            web.stop()
        assert "Traceback" not in web.output()
