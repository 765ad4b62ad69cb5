"""The review page follows the dataset live, through a real web server (daphne) and a private Valkey: a new
submission raises the waiting count (and what "approve all shown" approves), another reviewer's decision on the image
on screen is shown; when the web server dies and starts again, what happened meanwhile (submissions, decisions, new
boxes) is on the page after it reconnects, an empty page offers what arrived, and the server logs no traceback."""

import pytest

from apps.labeling import services
from tests.conftest import log_in
from tests.faults import private_redis
from tests.live_web import Web, in_thread

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOPIC = "dataset.robots"
BOX = [{"label": "vector", "box": [10, 10, 40, 30]}]


def submit(dataset, make_image, user, seed, boxes=BOX):
    image = make_image(dataset, seed=seed)
    in_thread(services.annotation_submit, image=image, user=user, boxes_api=boxes, version=0)
    return image


def review_page(open_browser, web, path):
    page = open_browser()
    log_in(page, web.server, "rita")
    page.goto(f"{web.url}{path}")
    page.wait_for_function("window.labelTool && window.labelTool.ready")
    page.wait_for_function(f"VectorEvents.synced('{TOPIC}') === 1")  # the first re-sync is done
    return page


def test_the_review_page_updates_live_and_catches_up_after_the_server_was_down(
    open_browser, dataset, make_image, make_user, settings, tmp_path
):
    ann, carl = make_user("ann", "annotator"), make_user("carl", "annotator")
    _rita, rex = make_user("rita", "reviewer"), make_user("rex", "reviewer")
    first = submit(dataset, make_image, ann, 1)
    second = submit(dataset, make_image, ann, 2)
    with private_redis(settings) as (redis_url, _server):
        web = Web(redis_url, tmp_path / "web.log").start()
        try:
            page = review_page(open_browser, web, "/review/robots/")
            assert page.evaluate("window.labelTool.state.current.id") == first.pk
            assert page.text_content("#review-waiting") == "2"
            empty = review_page(open_browser, web, "/review/robots/?annotator=carl")  # nothing of carl's waits
            assert page.is_hidden("#new-submissions") and empty.is_visible("#empty-queue")
            assert empty.is_hidden("#new-submissions")

            # live: a new submission, then another reviewer approves the image on screen
            third = submit(dataset, make_image, ann, 3)
            page.wait_for_function("document.getElementById('review-waiting').textContent === '3'")
            assert page.text_content("#batch-count") == "3"
            assert page.evaluate("window.labelTool.state.current.id") == first.pk, "the image on screen stays"
            in_thread(services.image_review, image=first, reviewer=rex, decision="approve")
            page.wait_for_selector('[data-key="remote-status"]:has-text("approved by rex")')
            assert page.text_content("#image-status") == "approved"
            assert "Reopen" in page.text_content("#reject-btn")
            page.wait_for_function("document.getElementById('review-waiting').textContent === '2'")
            assert page.evaluate("VectorEvents.opens('dataset.robots')") == 1

            # the web server dies; meanwhile rex reopens the image on screen, approves another, and carl submits
            web.kill()
            in_thread(services.image_review, image=first, reviewer=rex, decision="reject", comment="the box is off")
            in_thread(services.image_review, image=second, reviewer=rex, decision="approve")
            carls = submit(dataset, make_image, carl, 4)
            web.start()

            page.wait_for_function(f"VectorEvents.synced('{TOPIC}') >= 2", timeout=90_000)
            assert page.evaluate(f"VectorEvents.opens('{TOPIC}')") >= 2
            assert page.text_content("#review-waiting") == "2"  # the third and carl's
            assert page.evaluate("window.labelTool.state.current.id") == first.pk
            assert page.text_content("#image-status") == "rejected"
            assert "can no longer be reviewed" in page.text_content('[data-key="remote-status"]')
            assert page.evaluate("window.labelTool.state.readOnly").startswith("This image is rejected")
            assert page.text_content("#batch-count") == "2"
            assert sorted(page.evaluate("window.labelTool.waitingIds()")) == sorted([third.pk, carls.pk])
            page.screenshot(path=str(tmp_path / "review-after-reconnect.png"))
            empty.wait_for_function(f"VectorEvents.synced('{TOPIC}') >= 2", timeout=90_000)
            empty.wait_for_selector("#new-submissions:not([hidden])")
            assert empty.text_content("#new-submissions-count") == "1"
            assert empty.evaluate("window.labelTool.state.current") is None
            empty.screenshot(path=str(tmp_path / "review-empty-after-reconnect.png"))

            # new boxes saved for the image on screen while it is not edited here are shown; events flow again
            page.goto(f"{web.url}/review/robots/")
            page.wait_for_function("window.labelTool && window.labelTool.ready")
            page.wait_for_function(f"VectorEvents.synced('{TOPIC}') === 1")
            assert page.evaluate("window.labelTool.state.current.id") == third.pk
            in_thread(services.image_claim, image=third, user=ann, take_over=True)
            page.wait_for_selector('[data-key="claim"]:has-text("ann is editing this image")')
            moved = [{"label": "cube", "box": [20, 20, 30, 30]}]
            in_thread(services.annotation_submit, image=third, user=ann, boxes_api=moved, version=1)
            page.wait_for_selector('[data-key="remote"]:has-text("ann saved version 2")')
            assert page.evaluate("window.labelTool.state.boxes.map((b) => b.label)") == ["cube"]
            assert page.evaluate("window.labelTool.state.version") == 2
            assert page.locator('[data-key="claim"]').count() == 0, "the claim ended with the submission"
            empty.click("#new-submissions a")
            empty.wait_for_function("window.labelTool && window.labelTool.ready")
            assert empty.evaluate("window.labelTool.state.current.id") == carls.pk
            page.screenshot(path=str(tmp_path / "review-live.png"), full_page=True)
            assert page.js_errors == [] and empty.js_errors == []
        finally:
            web.stop()
        assert "Traceback" not in web.output()
