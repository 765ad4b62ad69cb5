"""The dataset page's upload in a real browser (Debian's Chromium through Playwright) against a live server:
files dropped and chosen are posted one at a time, each with its own progress and its own result or error."""

import os

import pytest

from apps.datasets.models import Image
from tests.conftest import require
from tests.datasets.factories import jpeg, make_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync", "--no-first-run"]

DROP_FILES = """([good, bad]) => {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes(good)], "dropped.jpg", {type: "image/jpeg"}));
  transfer.items.add(new File([bytes(bad)], "notes.jpg", {type: "image/jpeg"}));
  const zone = document.getElementById("dropzone");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def test_drag_and_drop_and_chosen_files_upload_with_per_file_results(live_server, make_user, monkeypatch, tmp_path):
    import base64

    require(os.path.exists(CHROMIUM), "chromium")
    make_dataset("robots")
    make_user("ann", "annotator")
    chosen = tmp_path / "chosen.jpg"
    chosen.write_bytes(jpeg(2))
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the ORM is read below while Playwright's loop exists
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server.url}/accounts/login/")
            page.fill("input[name=username]", "ann")
            page.fill("input[name=password]", "pw-for-tests-123")
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_load_state("networkidle")
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
        finally:
            browser.close()
    by_name = {name: (result, note) for name, result, note in results}
    assert by_name["dropped.jpg"][0] == "ok" and by_name["chosen.jpg"][0] == "ok"
    assert by_name["notes.jpg"][0] == "error" and "not_an_image" in by_name["notes.jpg"][1]
    assert Image.objects.count() == 2 and set(Image.objects.values_list("source", flat=True)) == {"upload"}
