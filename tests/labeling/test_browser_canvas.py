"""Issue 15 in a real browser (Chromium): the canvas (class menu, suggestions one by one, crosshair, class keys on the
selected box only, "new box takes the last used class", the previous image), the queue (rejected first with the
comment, skips, the empty queue saying why), approved images read-only and claims taken over only when asked."""

import pytest

from apps.datasets.models import Image
from apps.datasets.services import annotation_set
from apps.labeling import services
from apps.labeling.models import ImageClaim
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

W, H = 320, 180


class Canvas:
    """Image-pixel helpers over window.labelTool."""

    def __init__(self, page, width=W):
        self.page = page
        page.wait_for_function("window.labelTool && window.labelTool.ready", timeout=10000)
        self.rect = page.evaluate("window.labelTool.imageRect()")
        self.scale = self.rect["width"] / width

    def at(self, x, y):
        return self.rect["x"] + x * self.scale, self.rect["y"] + y * self.scale

    def drag(self, x0, y0, x1, y1):
        self.page.mouse.move(*self.at(x0, y0))
        self.page.mouse.down()
        self.page.mouse.move(*self.at((x0 + x1) / 2, (y0 + y1) / 2), steps=3)
        self.page.mouse.move(*self.at(x1, y1), steps=3)
        self.page.mouse.up()

    def click(self, x, y):
        self.page.mouse.click(*self.at(x, y))

    def labels(self):
        return self.page.evaluate("window.labelTool.state.boxes.map(b => b.label)")


def test_class_menu_suggestions_one_by_one_crosshair_class_keys_and_going_back(
    open_browser, live_server, dataset, make_image, make_user, api_as, django_capture_on_commit_callbacks
):
    predictions = [
        {"label": "vector", "confidence": 0.9, "box": [20, 20, 60, 50]},
        {"label": "cube", "confidence": 0.7, "box": [200, 100, 40, 40]},
        {"label": "charger", "confidence": 0.6, "box": [120, 20, 50, 30]},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        first = make_image(dataset, seed=71, width=W, height=H, source="feedback", meta={"predictions": predictions})
    make_image(dataset, seed=72, width=W, height=H)
    ann = make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/robots/")
    c = Canvas(page)
    assert page.evaluate("window.labelTool.state.current.id") == first.pk

    c.page.mouse.move(*c.at(160, 90))
    assert page.evaluate("window.labelTool.crosshairVisible()"), "a crosshair follows the pointer over the image"
    c.click(45, 45)  # a click on one suggestion takes that one only
    assert c.labels() == ["vector"] and page.evaluate("window.labelTool.state.suggestions.length") == 2
    page.keyboard.press("a")  # the rest at once
    assert c.labels() == ["vector", "cube", "charger"]

    # The class menu of one box: click its label tag.
    uid = page.evaluate("window.labelTool.state.boxes[0].uid")
    tag = page.evaluate(f"window.labelTool.tagRect({uid})")
    page.mouse.click(tag["x"] + tag["width"] / 2, tag["y"] + tag["height"] / 2)
    page.wait_for_selector("#class-menu:not([hidden])")
    page.screenshot(path="/tmp/label-class-menu.png")
    page.click("#class-menu button[data-class-index='2']")
    assert c.labels() == ["charger", "cube", "charger"]
    # ... or M with the box selected, then a digit.
    c.click(220, 120)
    page.keyboard.press("m")
    page.wait_for_selector("#class-menu:not([hidden])")
    page.keyboard.press("1")
    assert c.labels() == ["charger", "vector", "charger"]

    # "New box takes the last used class" (on): the class just given (vector) is the next box's.
    page.keyboard.press("Escape")
    page.keyboard.press("2")  # nothing selected: picks the class of new boxes, relabels nothing
    assert c.labels() == ["charger", "vector", "charger"]
    c.drag(250, 20, 300, 60)
    assert c.labels()[-1] == "cube"
    assert page.evaluate("window.labelTool.state.selected") is None, "a class key now cannot relabel it by surprise"
    c.click(140, 35)  # select the third box and make it a vector
    page.keyboard.press("1")
    page.keyboard.press("Escape")
    c.drag(10, 120, 60, 170)
    assert c.labels()[-1] == "vector", "the last used class"
    page.click("#sticky-class")  # off: new boxes keep the class picked in the list
    page.keyboard.press("3")
    c.click(275, 40)
    page.keyboard.press("2")  # relabels that box only
    page.keyboard.press("Escape")
    c.drag(100, 120, 150, 170)
    assert c.labels() == ["charger", "vector", "vector", "cube", "vector", "charger"]

    page.keyboard.press("n")  # submit, next image
    page.wait_for_function(f"window.labelTool.state.current.id !== {first.pk}")
    page.keyboard.press("b")  # the previous image again
    page.wait_for_function(f"window.labelTool.state.current.id === {first.pk}")
    assert c.labels() == ["charger", "vector", "vector", "cube", "vector", "charger"]
    page.keyboard.press("[")
    saved = api_as(ann).get(f"/api/v1/images/{first.pk}/annotations").json()
    assert len(saved["boxes"]) == 6 and saved["status"] == "submitted"
    assert page.js_errors == []


def test_rejected_first_with_the_comment_then_skips_and_an_empty_queue_that_says_why(
    open_browser, live_server, dataset, make_image, make_user
):
    ann, rita = make_user("ann", "annotator"), make_user("rita", "reviewer")
    unlabeled = make_image(dataset, seed=81, width=W, height=H)
    rejected = make_image(dataset, seed=82, width=W, height=H)
    services.annotation_submit(
        image=rejected, user=ann, boxes_api=[{"label": "cube", "box": [10, 10, 40, 40]}], version=0
    )
    services.image_review(image=rejected, reviewer=rita, decision="reject", comment="That is a charger.")
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/robots/")
    Canvas(page)
    assert page.evaluate("window.labelTool.state.current.id") == rejected.pk, "her rejected image comes first"
    assert "That is a charger." in page.inner_text("#notices")

    page.keyboard.press("s")
    page.wait_for_function(  # shown and settled (keys pressed while the page is busy are ignored)
        f"window.labelTool.state.current && window.labelTool.state.current.id === {unlabeled.pk}"
        " && !window.labelTool.state.busy"
    )
    page.keyboard.press("s")
    page.wait_for_selector("#empty-queue:not([hidden])")
    why = page.inner_text("#empty-why")
    assert "You skipped 2 images" in why and "comes back to you at" in why
    for button in ("#submit-btn", "#skip-btn", "#undo-btn", "#delete-btn"):
        assert page.is_disabled(button), button
    page.screenshot(path="/tmp/label-empty.png")
    assert page.js_errors == []


def test_an_approved_image_is_read_only_and_a_colleagues_image_is_taken_over_only_when_asked(
    open_browser, live_server, dataset, make_image, make_user, api_as
):
    ann, bob = make_user("ann", "annotator"), make_user("bob", "annotator")
    approved = make_image(dataset, seed=91, width=W, height=H)
    annotation_set(
        image=approved, boxes=[{"class_id": 0, "box": [20, 20, 80, 60]}], user=ann, status=Image.Status.APPROVED
    )
    busy = make_image(dataset, seed=92, width=W, height=H)
    services.image_claim(image=busy, user=ann)

    page = open_browser()
    log_in(page, live_server, "bob")
    page.goto(f"{live_server.url}/label/robots/?image={approved.pk}")
    c = Canvas(page)
    assert "read-only" in page.inner_text("#notices")
    c.drag(150, 50, 250, 150)
    c.drag(50, 50, 120, 100)  # trying to move the box
    assert page.evaluate("window.labelTool.state.boxes.map(b => b.box)") == [[20, 20, 80, 60]]
    assert page.is_disabled("#submit-btn")
    page.screenshot(path="/tmp/label-read-only.png")
    put = api_as(bob).put(f"/api/v1/images/{approved.pk}/annotations", {"version": 1, "boxes": []}, format="json")
    assert put.status_code == 409 and put.json()["error"]["code"] == "approved"

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_server.url}/label/robots/?image={busy.pk}")
    Canvas(page)
    assert "ann is labeling image" in asked[0]
    assert ImageClaim.objects.get(image=busy).user == ann, "declined: ann keeps it"
    assert page.is_disabled("#submit-btn")

    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.goto(f"{live_server.url}/label/robots/?image={busy.pk}")
    Canvas(page)
    assert len(asked) == 2
    assert ImageClaim.objects.get(image=busy).user == bob, "taken over after saying yes"
    assert not page.is_disabled("#submit-btn")
    assert page.js_errors == []
