"""The dataset page's upload in a real browser (Debian's Chromium through Playwright) against a live server:
files dropped and chosen are posted one at a time, each with its own progress and its own result or error."""

import pytest

from apps.datasets.models import Image
from tests.builders import jpeg, make_dataset, make_image
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


DROP_FILES = """([good, bad]) => {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes(good)], "dropped.jpg", {type: "image/jpeg"}));
  transfer.items.add(new File([bytes(bad)], "notes.jpg", {type: "image/jpeg"}));
  const zone = document.getElementById("dropzone");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def test_drag_and_drop_and_chosen_files_upload_with_per_file_results(open_browser, live_server, make_user, tmp_path):
    import base64

    make_dataset("robots")
    make_user("ann", "annotator")
    chosen = tmp_path / "chosen.jpg"
    chosen.write_bytes(jpeg(2))

    page = open_browser()
    errors = page.js_errors
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/datasets/robots/")
    good = base64.b64encode(jpeg(1)).decode()
    bad = base64.b64encode(b"this is a text file, not a photo").decode()
    page.evaluate(DROP_FILES, [good, bad])
    page.set_input_files("#file-input", str(chosen))
    page.wait_for_function("document.querySelectorAll('.upload-item[data-result]').length === 3", timeout=20000)
    results = page.eval_on_selector_all(
        ".upload-item",
        "items => items.map(i => [i.querySelector('.text-truncate').textContent, i.dataset.result,"
        " i.querySelector('.upload-note').textContent])",
    )
    assert errors == []
    by_name = {name: (result, note) for name, result, note in results}
    assert by_name["dropped.jpg"][0] == "ok" and by_name["chosen.jpg"][0] == "ok"
    assert by_name["notes.jpg"][0] == "error" and "not_an_image" in by_name["notes.jpg"][1]
    assert Image.objects.count() == 2 and set(Image.objects.values_list("source", flat=True)) == {"upload"}


def test_the_page_shows_the_labeling_queue_and_who_works_on_what(open_browser, live_server, make_user):
    from apps.labeling.services import image_claim

    dataset = make_dataset("robots")
    first, second = make_image(dataset, 1), make_image(dataset, 2)
    make_image(dataset, 3, boxes=[], status="submitted")
    image_claim(image=first, user=make_user("ann", "annotator"))
    make_user("rev", "reviewer")

    page = open_browser()
    log_in(page, live_server, "rev")
    page.goto(f"{live_server.url}/datasets/robots/")
    page.wait_for_selector("#labeling-live:not(.d-none)")
    counts = page.eval_on_selector_all(
        "#labeling-live [data-count]", "n => n.map(x => [x.dataset.count, x.textContent])"
    )
    assert dict(counts) == {"to_label": "2", "claimed": "1", "to_review": "1"}
    assert page.text_content("#labeling-who").strip() == f"ann on image {first.pk}"

    # Later changes arrive as events on the dataset's topic (the test server has no WebSocket: hand them over).
    page.evaluate(
        "([id]) => VectorEvents.handlers.get('dataset.robots').forEach((h) => {"
        " h('claim', {image_id: id, user: 'bob'});"
        " h('queue', {to_label: 1, claimed: 2, to_review: 2}); })",
        [second.pk],
    )
    assert page.text_content("#labeling-who").count("on image") == 2
    assert page.text_content('#labeling-live [data-count="to_review"]') == "2"
    assert page.js_errors == []
