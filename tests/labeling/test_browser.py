"""The labeling page in a real browser (Debian's Chromium through Playwright) against a live server: draw, change
a class by key, delete, undo, submit with the keyboard, then read the saved boxes back through the API."""

import pytest

from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_draw_edit_undo_and_submit_with_the_keyboard(open_browser, live_server, dataset, make_image, make_user, api_as):
    image = make_image(dataset, seed=11, width=320, height=180)
    make_image(dataset, seed=12, width=320, height=180)  # the next image, prefetched
    annotator = make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")

    page.goto(f"{live_server.url}/label/robots/?image={image.pk}")
    page.wait_for_function("window.labelTool && window.labelTool.ready", timeout=10000)
    rect = page.evaluate("window.labelTool.imageRect()")
    scale = rect["width"] / image.width
    assert abs(rect["height"] / image.height - scale) < 0.01, "the image keeps its aspect ratio"

    def to_page(x, y):
        return rect["x"] + x * scale, rect["y"] + y * scale

    def drag(x0, y0, x1, y1):
        page.mouse.move(*to_page(x0, y0))
        page.mouse.down()
        page.mouse.move(*to_page((x0 + x1) / 2, (y0 + y1) / 2), steps=4)
        page.mouse.move(*to_page(x1, y1), steps=4)
        page.mouse.up()

    drag(20, 30, 100, 90)  # box A, class 1 (vector)
    drag(150, 40, 300, 160)  # box B; a new box is not selected, so a class key cannot relabel it by surprise
    assert page.evaluate("window.labelTool.state.selected") is None
    page.mouse.click(*to_page(225, 100))  # select B
    page.keyboard.press("2")  # B becomes "cube"
    page.mouse.click(*to_page(60, 60))  # select A
    page.keyboard.press("Delete")
    assert page.evaluate("window.labelTool.state.boxes.length") == 1
    page.keyboard.press("Control+z")  # A comes back
    assert page.evaluate("window.labelTool.state.boxes.map(b => b.label)") == ["vector", "cube"]
    page.screenshot(path="/tmp/label.png")

    page.keyboard.press("n")
    page.wait_for_function(f"window.labelTool.state.current && window.labelTool.state.current.id !== {image.pk}")
    assert page.js_errors == []

    saved = api_as(annotator).get(f"/api/v1/images/{image.pk}/annotations").json()
    assert saved["version"] == 1 and saved["status"] == "submitted"
    got = sorted(saved["boxes"], key=lambda b: b["box"][0])
    assert [b["label"] for b in got] == ["vector", "cube"]
    for box, expected in zip(got, ([20, 30, 80, 60], [150, 40, 150, 120]), strict=True):
        assert all(abs(a - b) <= 2 for a, b in zip(box["box"], expected, strict=True)), (box, expected)
    assert page.js_errors == []


def test_a_stale_save_offers_to_load_the_other_persons_boxes(
    open_browser, live_server, dataset, make_image, make_user, api_as
):
    image = make_image(dataset, seed=21, width=320, height=180)
    make_user("ann", "annotator")
    bob = make_user("bob", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/robots/?image={image.pk}")
    page.wait_for_function("window.labelTool && window.labelTool.ready", timeout=10000)

    # Ann's claim runs out (a long lunch); Bob saves through the API while her page is still open.
    from django.utils import timezone

    from apps.labeling.models import ImageClaim

    ImageClaim.objects.filter(image=image).update(expires_at=timezone.now())
    theirs = [{"label": "charger", "box": [10, 10, 50, 40]}]
    assert (
        api_as(bob)
        .put(f"/api/v1/images/{image.pk}/annotations", {"version": 0, "boxes": theirs}, format="json")
        .status_code
        == 200
    )

    page.keyboard.press("n")
    page.wait_for_selector("#conflict-modal.show")
    page.click("#conflict-load")
    page.wait_for_function("window.labelTool.state.version === 1")
    assert page.evaluate("window.labelTool.state.boxes.map(b => b.label)") == ["charger"]
    assert api_as(bob).get(f"/api/v1/images/{image.pk}/annotations").json()["version"] == 1  # nothing overwritten
    assert page.js_errors == []


def test_review_page_rejects_with_a_comment_and_approves_by_key(
    open_browser, live_server, dataset, make_image, make_user, api_as
):
    from apps.labeling import services

    annotator = make_user("ann", "annotator")
    make_user("rita", "reviewer")
    first, second = (
        make_image(dataset, seed=31, width=320, height=180),
        make_image(dataset, seed=32, width=320, height=180),
    )
    for image in (first, second):
        services.annotation_submit(
            image=image, user=annotator, boxes_api=[{"label": "vector", "box": [30, 20, 120, 90]}], version=0
        )
    page = open_browser()
    log_in(page, live_server, "rita")

    page.goto(f"{live_server.url}/review/robots/")
    page.wait_for_function("window.labelTool && window.labelTool.ready")
    assert page.evaluate("window.labelTool.state.current.id") == first.pk
    assert page.evaluate("window.labelTool.state.boxes.length") == 1
    page.screenshot(path="/tmp/review.png")
    page.keyboard.press("r")
    page.keyboard.type("The box misses the lift arm.")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        f"window.labelTool && window.labelTool.ready && window.labelTool.state.current.id === {second.pk}"
    )
    page.keyboard.press("a")
    page.wait_for_selector("#empty-queue:not([hidden])")
    assert "Nothing waiting here" in page.inner_text("#empty-queue")

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("rejected", "approved")
    bundle = api_as(annotator).get(f"/api/v1/labeling/images/{first.pk}").json()
    assert bundle["rejection"]["comment"] == "The box misses the lift arm."
    assert page.js_errors == []


def test_suggestions_are_shown_and_accepted_with_one_key(
    open_browser, live_server, dataset, make_image, make_user, api_as, django_capture_on_commit_callbacks
):
    predictions = [
        {"label": "vector", "confidence": 0.81, "box": [40, 30, 100, 80]},
        {"label": "charger", "confidence": 0.42, "box": [200, 100, 60, 50]},
    ]
    with django_capture_on_commit_callbacks(execute=True):  # the image_ingested receiver stores them
        image = make_image(
            dataset, seed=41, width=320, height=180, source="feedback", meta={"predictions": predictions}
        )
    annotator = make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")

    page.goto(f"{live_server.url}/label/robots/")  # the queue hands out the feedback image
    page.wait_for_function("window.labelTool && window.labelTool.ready")
    assert page.evaluate("window.labelTool.state.current.id") == image.pk
    assert page.evaluate("window.labelTool.state.suggestions.length") == 2
    assert page.is_visible("#accept-btn")
    page.screenshot(path="/tmp/label-suggestions.png")
    page.keyboard.press("a")
    assert page.evaluate("window.labelTool.state.boxes.length") == 2
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty-queue:not([hidden])")

    saved = api_as(annotator).get(f"/api/v1/images/{image.pk}/annotations").json()
    assert [(b["label"], b["box"]) for b in saved["boxes"]] == [(p["label"], p["box"]) for p in predictions]
    assert page.js_errors == []


def test_a_closed_tab_loses_nothing(open_browser, live_server, dataset, make_image, make_user):
    image = make_image(dataset, seed=51, width=320, height=180)
    make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/robots/")
    page.wait_for_function("window.labelTool && window.labelTool.ready")
    rect = page.evaluate("window.labelTool.imageRect()")
    scale = rect["width"] / image.width
    page.keyboard.press("3")  # nothing selected: the class of new boxes
    page.mouse.move(rect["x"] + 50 * scale, rect["y"] + 40 * scale)
    page.mouse.down()
    page.mouse.move(rect["x"] + 120 * scale, rect["y"] + 100 * scale, steps=5)
    page.mouse.up()
    page.wait_for_function("document.getElementById('save-state').textContent.startsWith('draft saved')")

    page.close()  # the tab is gone; a new one opens the queue again
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/robots/")
    page.wait_for_function("window.labelTool && window.labelTool.ready")

    assert page.evaluate("window.labelTool.state.current.id") == image.pk  # still this person's claim
    boxes = page.evaluate("window.labelTool.state.boxes.map(b => [b.label, b.box.map(Math.round)])")
    assert len(boxes) == 1 and boxes[0][0] == "charger"
    assert all(abs(a - b) <= 2 for a, b in zip(boxes[0][1], [50, 40, 70, 60], strict=True)), boxes
    assert "Restored your unsaved draft" in page.inner_text("#notices")


def test_boxes_drawn_after_zoom_and_pan_are_in_original_pixels(
    open_browser, live_server, dataset, make_image, make_user, api_as
):
    image = make_image(dataset, seed=61, width=320, height=180)
    annotator = make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/robots/?image={image.pk}")
    page.wait_for_function("window.labelTool && window.labelTool.ready")
    before = page.evaluate("window.labelTool.imageRect()")
    page.mouse.move(before["x"] + before["width"] / 2, before["y"] + before["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, -120)  # zoom in around the pointer
    page.keyboard.down(" ")  # pan with space + drag
    page.mouse.down()
    page.mouse.move(before["x"] + before["width"] / 2 - 80, before["y"] + before["height"] / 2 - 40, steps=5)
    page.mouse.up()
    page.keyboard.up(" ")
    rect = page.evaluate("window.labelTool.imageRect()")
    scale = rect["width"] / image.width
    assert scale > before["width"] / image.width * 1.4, "zoomed in"
    assert page.evaluate("window.labelTool.state.boxes.length") == 0, "panning draws nothing"

    page.mouse.move(rect["x"] + 150 * scale, rect["y"] + 80 * scale)
    page.mouse.down()
    page.mouse.move(rect["x"] + 170 * scale, rect["y"] + 95 * scale, steps=5)
    page.mouse.up()
    page.mouse.click(rect["x"] + 160 * scale, rect["y"] + 88 * scale)  # select the new box
    page.keyboard.press("ArrowRight")  # nudge it by one pixel
    page.keyboard.press("Enter")
    page.wait_for_function("window.labelTool.state.done === 1")

    [saved] = api_as(annotator).get(f"/api/v1/images/{image.pk}/annotations").json()["boxes"]
    assert all(abs(a - b) <= 1 for a, b in zip(saved["box"], [151, 80, 20, 15], strict=True)), saved
    assert page.js_errors == []
