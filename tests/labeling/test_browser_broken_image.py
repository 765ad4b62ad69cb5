"""An image whose file is missing (404) in a real browser (Chromium): the labeling page, where the image failed while
it was prefetched (before anything listened to it), and the review page, where it is the first image, both become
ready, say on the canvas what went wrong, and their next-image control moves on."""

import pytest
from django.core.files.storage import default_storage

from apps.labeling import services
from apps.labeling.models import LabelingEvent
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

W, H = 320, 180
ERROR = "#image-error"


def missing_file(image):
    default_storage.delete(image.storage_path)
    return image


def test_a_prefetched_image_that_404s_says_so_and_is_skipped(open_browser, live_server, dataset, make_image, make_user):
    first = make_image(dataset, seed=81, width=W, height=H)
    broken = missing_file(make_image(dataset, seed=82, width=W, height=H))  # next in line: prefetched
    last = make_image(dataset, seed=83, width=W, height=H)
    ann = make_user("ann", "annotator")
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/robots/?image={first.pk}")
    page.wait_for_function("window.labelTool && window.labelTool.ready")
    # the prefetched image has failed already, long before it is shown (nothing listens to it any more)
    page.wait_for_function(
        f"window.labelTool.state.prefetched && window.labelTool.state.prefetched.bundle.id === {broken.pk}"
        " && window.labelTool.state.prefetched.img.complete"
    )
    assert page.evaluate("window.labelTool.state.prefetched.img.naturalWidth") == 0

    page.keyboard.press("s")  # skip the first image: the broken one is shown
    page.wait_for_selector(f"{ERROR}:not([hidden])")
    page.wait_for_function("document.querySelector('#image-error-why').textContent.includes('404')")
    assert page.evaluate("window.labelTool.state.current.id") == broken.pk
    assert page.text_content("#image-error-title") == f"Image #{broken.pk} could not be loaded"
    assert "missing on the server (404)" in page.text_content("#image-error-why")
    assert page.is_disabled("#submit-btn") and page.is_enabled("#skip-btn")
    page.screenshot(path="/tmp/live2/label-broken-image.png")

    page.click("#image-error-next")  # skip it and go on
    page.wait_for_function(f"window.labelTool.state.current && window.labelTool.state.current.id === {last.pk}")
    page.wait_for_selector(ERROR, state="hidden")
    page.wait_for_function("window.labelTool.imageRect().width > 0")
    # The buttons follow on the next render once the image is drawn (a wait, not a snapshot: the order may vary).
    page.wait_for_function("!document.getElementById('submit-btn').disabled")
    skipped = LabelingEvent.objects.filter(user=ann, kind=LabelingEvent.Kind.SKIP).values_list("image_id", flat=True)
    assert sorted(skipped) == sorted([first.pk, broken.pk])
    assert page.js_errors == []


def test_the_review_page_on_an_image_that_404s_becomes_ready_and_goes_on(
    open_browser, live_server, dataset, make_image, make_user
):
    ann, _rita = make_user("ann", "annotator"), make_user("rita", "reviewer")
    images = [make_image(dataset, seed=seed, width=W, height=H) for seed in (91, 92)]
    for image in images:
        services.annotation_submit(
            image=image, user=ann, boxes_api=[{"label": "cube", "box": [5, 5, 20, 20]}], version=0
        )
    broken, other = missing_file(images[0]), images[1]  # the longest waiting is first
    page = open_browser()
    log_in(page, live_server, "rita")
    page.goto(f"{live_server.url}/review/robots/")
    page.wait_for_function("window.labelTool && window.labelTool.ready")
    page.wait_for_selector(f"{ERROR}:not([hidden])")
    assert page.evaluate("window.labelTool.state.current.id") == broken.pk
    assert page.is_disabled("#approve-btn") and page.is_disabled("#reject-btn")
    page.wait_for_function("document.querySelector('#image-error-why').textContent.includes('404')")
    page.screenshot(path="/tmp/live2/review-broken-image.png")

    page.click("#image-error-next")
    page.wait_for_function(
        f"window.labelTool && window.labelTool.ready && window.labelTool.state.current.id === {other.pk}"
    )
    assert page.is_hidden(ERROR) and page.is_enabled("#approve-btn")
    assert page.evaluate("window.labelTool.imageRect().width") > 0
    page.keyboard.press("b")  # back goes to the broken one again
    page.wait_for_function(
        f"window.labelTool && window.labelTool.ready && window.labelTool.state.current.id === {broken.pk}"
    )
    page.wait_for_selector(f"{ERROR}:not([hidden])")
    assert page.js_errors == []
