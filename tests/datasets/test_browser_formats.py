"""The dataset page's export format choice and the import page's per-file report and rollback, in a real browser
(Debian's Chromium through Playwright) against a live server."""

import io
import os
import zipfile

import pytest

from apps.datasets.models import Image
from apps.datasets.services import import_job_run_path, version_freeze
from tests.builders import jpeg, make_dataset, make_image, zip_bytes
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_version_exports_in_the_chosen_format(open_browser, live_server, make_user):
    dataset = make_dataset("robots", review_required=False)
    make_image(dataset, 1, boxes=[{"class_id": 0, "box": [5, 5, 20, 20]}], status="submitted")
    version_freeze(dataset=dataset)
    make_user("eng", "ml_engineer")
    page = open_browser()
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/datasets/robots/")
    options = page.eval_on_selector_all("#export-1 option", "os => os.map(o => o.value)")
    assert options == ["yolo", "coco", "voc", "labelstudio"]
    page.select_option("#export-1", "voc")
    os.makedirs("var/screenshots", exist_ok=True)
    page.screenshot(path="var/screenshots/dataset-export.png", full_page=True)
    with page.expect_download() as download:
        page.click(".export-form button")
    path = download.value.path()
    with zipfile.ZipFile(io.BytesIO(open(path, "rb").read())) as archive:
        assert any(n.startswith("Annotations/") for n in archive.namelist())
    assert download.value.suggested_filename == "robots-v1-voc.zip" and page.js_errors == []


def test_the_import_page_lists_every_file_and_rolls_the_import_back(open_browser, live_server, make_user, tmp_path):
    dataset = make_dataset("robots")
    same = jpeg(1)
    entries = {
        "data.yaml": b"names: [vector, cube]\n",
        "images/a.jpg": same,
        "labels/a.txt": b"0 0.5 0.5 0.25 0.25\n",
        "images/a_copy.jpg": same,
        "labels/a_copy.txt": b"1 0.2 0.2 0.1 0.1\n",
        "images/b.jpg": jpeg(2),
        "images/notes.jpg": b"not a photo",
    }
    archive = tmp_path / "set.zip"
    archive.write_bytes(zip_bytes(entries))
    job = import_job_run_path(dataset=dataset, path=archive)
    make_user("eng", "ml_engineer")
    page = open_browser()
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/datasets/robots/imports/{job.pk}/")
    rows = page.eval_on_selector_all("#import-files tbody tr", "rs => rs.map(r => r.dataset.result)")
    assert sorted(rows) == ["conflict", "imported", "imported", "skipped"]
    conflict = page.inner_text("#import-files tr[data-result=conflict]")
    assert "images/a.jpg" in conflict and "not used: cube" in conflict
    os.makedirs("var/screenshots", exist_ok=True)
    page.screenshot(path="var/screenshots/import-report.png", full_page=True)
    page.click("#result-filter >> text=conflict 1")
    assert page.eval_on_selector_all("#import-files tbody tr", "rs => rs.length") == 1
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#rollback")
    page.wait_for_selector("#rollback-done")
    assert "2 images removed" in page.inner_text("#rollback-done")
    assert Image.objects.count() == 0 and page.js_errors == []
