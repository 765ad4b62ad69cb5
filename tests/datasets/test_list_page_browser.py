"""The datasets list in Chromium: the slug's pattern is valid under the v flag (validation works), the status
headers read as words, a refused new dataset keeps what was typed; the grid narrowed to chosen image ids."""

import os

import pytest

from tests.builders import dataset_row, image_rows
from tests.conftest import log_in


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_new_dataset_form_validates_and_keeps_input_on_error(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset_row("taken")
    page = open_browser()
    console = []
    page.on("console", lambda m: console.append(m.text))
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/datasets/")
    headers = page.locator("#dataset-table thead th").all_text_contents()
    assert "in progress" in headers and "inprogress" not in headers

    page.click("text=New dataset")
    slug = page.locator("input[name=slug]")
    slug.fill("bad slug!")
    assert page.evaluate("document.querySelector('input[name=slug]').validity.patternMismatch") is True
    slug.fill("good-slug_1")
    assert page.evaluate("document.querySelector('input[name=slug]').validity.valid") is True
    assert not [m for m in console if "pattern" in m.lower()]  # Chromium reports an invalid pattern on the console

    slug.fill("taken")
    page.fill("input[name=name]", "Kitchen robots")
    page.fill("input[name=classes]", "cube, charger")
    page.uncheck("#rr")
    page.click("button:has-text('Create')")
    page.wait_for_selector("#new-dataset[open] .alert-danger")
    assert page.input_value("input[name=slug]") == "taken"
    assert page.input_value("input[name=name]") == "Kitchen robots"
    assert page.input_value("input[name=classes]") == "cube, charger"
    assert not page.is_checked("#rr")
    os.makedirs("var/screenshots", exist_ok=True)
    page.screenshot(path="var/screenshots/datasets-new-error.png", full_page=True)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_grid_shows_only_the_chosen_image_ids(open_browser, live_server, make_user):
    make_user("ann", "annotator")
    dataset = dataset_row("chosen")
    images = image_rows(dataset, [{}] * 4)
    page = open_browser()
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/datasets/{dataset.slug}/?ids={images[0].id},{images[2].id}")
    assert page.locator("#ids-filter").count() == 1
    shown = page.locator("[data-image-id]").evaluate_all("els => els.map(e => Number(e.dataset.imageId))")
    assert sorted(set(shown)) == sorted([images[0].id, images[2].id])
