"""Issue 15 in a real browser (Chromium): review on the labeling canvas (zoom, pan, edit and delete boxes as the
reviewer, approve by key and move on, back, batch approval of a filtered set), the suspect-labels queue fixed by
mouse and keys (the "done when" path), and the class card of the dataset page."""

import pytest

from apps.datasets.models import Annotation, Image
from apps.datasets.services import annotation_set
from apps.labeling import services
from apps.labeling.models import SuspectLabel
from tests.conftest import log_in
from tests.labeling.test_browser_canvas import Canvas

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

W, H = 320, 180


def submitted(dataset, make_image, user, seed, boxes):
    image = make_image(dataset, seed=seed, width=W, height=H)
    services.annotation_submit(image=image, user=user, boxes_api=boxes, version=0)
    return image


def test_review_zoom_pan_edit_delete_approve_by_key_back_and_batch_approve(
    open_browser, live_server, dataset, make_image, make_user
):
    ann, bob, _rita = make_user("ann", "annotator"), make_user("bob", "annotator"), make_user("rita", "reviewer")
    first = submitted(
        dataset,
        make_image,
        ann,
        1,
        [{"label": "vector", "box": [120, 60, 60, 40]}, {"label": "cube", "box": [200, 100, 40, 40]}],
    )
    second = submitted(dataset, make_image, ann, 2, [{"label": "vector", "box": [10, 10, 30, 30]}])
    bobs = submitted(dataset, make_image, bob, 3, [{"label": "cube", "box": [50, 50, 30, 30]}])
    page = open_browser()
    log_in(page, live_server, "rita")
    page.goto(f"{live_server.url}/review/robots/")
    c = Canvas(page)
    assert page.evaluate("window.labelTool.state.current.id") == first.pk
    assert "labeled by ann" in page.inner_text("#queue-position")

    fit_width = c.rect["width"]
    page.mouse.move(*c.at(160, 90))
    for _ in range(3):
        page.mouse.wheel(0, -120)  # zoom in around the pointer
    page.keyboard.down(" ")  # pan
    page.mouse.down()
    page.mouse.move(*c.at(140, 80), steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    c = Canvas(page)
    assert c.rect["width"] > fit_width * 1.2
    assert page.evaluate("window.labelTool.state.boxes[0].box") == [120, 60, 60, 40], "panning moves no box"
    c.click(220, 120)  # select the cube and delete it
    page.keyboard.press("Delete")
    c.drag(150, 80, 160, 85)  # move the vector 10 px right, 5 down by mouse
    # still selected after the drag: nudge it one more pixel right by key
    page.keyboard.press("ArrowRight")
    page.screenshot(path="/tmp/review-edit.png")
    page.keyboard.press("a")  # approve with the edits, next
    page.wait_for_function(
        f"window.labelTool && window.labelTool.ready && window.labelTool.state.current.id === {second.pk}"
    )

    annotation = Annotation.objects.select_related("updated_by").get(image=first)
    assert annotation.updated_by.username == "rita", "the edit is the reviewer's"
    assert Image.objects.get(pk=first.pk).status == "approved"
    [box] = annotation.boxes
    assert all(abs(a - b) <= 1.5 for a, b in zip(box["box"], [131, 65, 60, 40], strict=True)), box

    page.keyboard.press("b")  # back to the image just approved
    page.wait_for_function(
        f"window.labelTool && window.labelTool.ready && window.labelTool.state.current.id === {first.pk}"
    )
    assert page.inner_text("#image-status") == "approved" and "Reopen" in page.inner_text("#reject-btn")

    page.goto(f"{live_server.url}/review/robots/?annotator=bob")
    Canvas(page)
    assert page.evaluate("window.labelTool.state.current.id") == bobs.pk
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#batch-approve-btn")
    page.wait_for_selector("#empty-queue:not([hidden])")
    statuses = dict(Image.objects.values_list("pk", "status"))
    assert (statuses[bobs.pk], statuses[second.pk]) == ("approved", "submitted"), "only the filtered set"
    # bob has nothing submitted now: the filter still says it shows bob's, not "any annotator"
    page.wait_for_function("window.labelTool && window.labelTool.ready && !window.labelTool.state.current")
    assert page.input_value("#filter-annotator") == "bob"
    assert page.text_content("#filter-annotator option:checked") == "bob"
    assert page.js_errors == []


def test_a_planted_wrong_label_is_suspect_fixed_by_mouse_and_keys_and_then_read_only_for_annotators(
    open_browser, live_server, dataset, make_image, make_user, api_as
):
    """The "done when" path: the model's boxes (stored as a trained model would give them) disagree with a shifted
    label; it tops the suspect queue; the reviewer fixes it on the review page; an annotator can no longer change it."""
    ann, _rita = make_user("ann", "annotator"), make_user("rita", "reviewer")
    truth = [{"class_id": 0, "box": [40, 30, 80, 60]}, {"class_id": 1, "box": [200, 90, 40, 40]}]
    predictions = [{**b, "confidence": 0.92} for b in truth]
    images = []
    for seed in range(1, 5):
        image = make_image(dataset, seed=seed, width=W, height=H)
        boxes = truth if seed != 3 else [{"class_id": 0, "box": [70, 50, 80, 60]}, truth[1]]  # planted: shifted
        annotation_set(image=image, boxes=boxes, user=ann, status=Image.Status.APPROVED)
        image.refresh_from_db()
        images.append(image)
    for image in images:
        services.suspects_store(image=image, model_id=1, predictions=predictions)
    planted = images[2]

    page = open_browser()
    log_in(page, live_server, "rita")
    page.goto(f"{live_server.url}/review/robots/suspects/")
    rows = page.locator("#suspect-table tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-image-id") == str(planted.pk)
    assert "loose" in rows.first.inner_text()
    page.screenshot(path="/tmp/suspects.png", full_page=True)
    page.goto(f"{live_server.url}/review/")
    assert page.locator("a.btn", has_text="Suspect labels").count() == 1  # the review home leads to the queue
    page.screenshot(path="/tmp/review-home.png")
    page.goto(f"{live_server.url}/review/robots/suspects/")
    rows.first.locator("a", has_text="Open").click()
    c = Canvas(page)
    assert page.evaluate("window.labelTool.state.current.id") == planted.pk
    assert "overlaps this box only" in page.inner_text("#suspect-reasons")
    page.screenshot(path="/tmp/review-suspect.png")

    c.drag(110, 80, 82, 62)  # drag the shifted box back by mouse (28 px left, 18 up), then finish with the keys
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("a")
    page.wait_for_selector("#empty-queue:not([hidden])")  # the suspect queue is done

    annotation = Annotation.objects.get(image=planted)
    fixed = sorted(annotation.boxes, key=lambda b: b["class_id"])[0]["box"]
    assert all(abs(a - b) <= 1.5 for a, b in zip(fixed, truth[0]["box"], strict=True)), fixed
    suspect = SuspectLabel.objects.get(image=planted)
    assert (suspect.verdict, suspect.verdict_by.username) == ("fixed", "rita")

    annotator_page = open_browser()
    log_in(annotator_page, live_server, "ann")
    annotator_page.goto(f"{live_server.url}/label/robots/?image={planted.pk}")
    a = Canvas(annotator_page)
    a.drag(10, 120, 60, 170)
    assert annotator_page.evaluate("window.labelTool.state.boxes.length") == 2
    assert annotator_page.is_disabled("#submit-btn") and "read-only" in annotator_page.inner_text("#notices")
    put = api_as(ann).put(
        f"/api/v1/images/{planted.pk}/annotations", {"version": annotation.version, "boxes": []}, format="json"
    )
    assert put.status_code == 409 and put.json()["error"]["code"] == "approved"
    assert page.js_errors == [] and annotator_page.js_errors == []


def test_the_class_card_adds_renames_reorders_merges_and_deletes_with_boxes_following(
    open_browser, live_server, dataset, make_image, make_user
):
    make_user("eve", "ml_engineer")
    image = make_image(dataset, seed=5, width=W, height=H)
    annotation_set(
        image=image,
        boxes=[{"class_id": 0, "box": [1, 1, 10, 10]}, {"class_id": 1, "box": [20, 20, 10, 10]}],
        status=Image.Status.APPROVED,
    )
    page = open_browser()
    log_in(page, live_server, "eve")
    page.goto(f"{live_server.url}/datasets/robots/")
    page.fill("#class-new", "dock")
    page.click("#classes-card button[value=add]")
    page.fill("#class-name-2", "charging station")
    page.click("#class-rows li:nth-child(3) button[value=rename]")
    page.click("#class-rows li:nth-child(4) button[value=up]")  # dock above the charging station
    page.select_option("#merge-source", label="cube")
    page.select_option("#merge-target", label="vector")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#class-merge button[value=merge]")
    page.wait_for_load_state("networkidle")
    dataset.refresh_from_db()
    assert dataset.classes == ["vector", "dock", "charging station"]
    page.screenshot(path="/tmp/dataset-classes.png", full_page=True)

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#class-rows li:nth-child(1) button[value=delete]")
    dataset.refresh_from_db()
    assert "every box of it" in asked[0] and dataset.classes[0] == "vector", "declined: nothing deleted"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#class-rows li:nth-child(1) button[value=delete]")
    page.wait_for_selector("text=Deleted class 'vector' and its 2 boxes.")
    dataset.refresh_from_db()
    assert dataset.classes == ["dock", "charging station"]
    assert Annotation.objects.get(image=image).boxes == []
    assert page.js_errors == []
