"""The dataset grid's thumbnail cards in a real browser: what a card says under its thumbnail (status and split
badges, the source and robot) stays inside the card at common widths, boxes shown or not."""

import os

import pytest

from apps.datasets.models import Image
from tests.builders import dataset_row, make_image
from tests.conftest import log_in

SHOTS = "var/screenshots"
WIDTHS = (1920, 1366, 1280, 1024, 768, 390)

# Every card whose content reaches past its own edges (the longest source name overflowed into the next card).
SPILLS = """() => [...document.querySelectorAll('#thumb-grid > a.card')].flatMap(card => {
  const edge = card.getBoundingClientRect();
  return [...card.querySelectorAll('.card-body > *')]
    .filter(el => { const r = el.getBoundingClientRect(); return r.left < edge.left - 0.5 || r.right > edge.right + 0.5
                                                                  || el.scrollWidth > el.clientWidth + 1; })
    .map(el => `image ${card.dataset.imageId}: "${el.textContent.trim()}"`);
})"""

BADGE_HEIGHTS = """() => [...document.querySelectorAll('#thumb-grid .card-body .badge')]
  .map(b => Math.round(b.offsetHeight))"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_card_text_stays_inside_its_card_at_common_widths(open_browser, live_server, make_user):
    # Given validation images from a robot with the longest source name, labelled and not
    make_user("eng", "ml_engineer")
    dataset = dataset_row("cards")
    for seed in range(8):
        # Short and long captions side by side: a card in a row stretches to the tallest one's height
        source = "shadow_disagreement" if seed % 2 else "upload"
        image = make_image(dataset, seed=seed, source=source, boxes=[{"class_id": 0, "box": [5, 5, 40, 30]}])
        serial = "00e2ad01" if seed % 2 else ""
        Image.objects.filter(pk=image.pk).update(split="val", split_pinned=True, robot_serial=serial)
    os.makedirs(SHOTS, exist_ok=True)
    page = open_browser()
    log_in(page, live_server, "eng")

    # When the grid of the validation split is shown, with boxes on the thumbnails, at every width from a phone's
    # to a wide screen (cards are between their 160 px minimum and twice that, depending on the width)
    page.goto(f"{live_server.url}/datasets/{dataset.slug}/?split=val")
    page.check("text=Show boxes")
    assert page.locator("#thumb-grid > a.card").count() == 8
    spills, stretched = {}, {}
    for width in range(360, 1930, 10):
        page.set_viewport_size({"width": width, "height": 900})
        if width in WIDTHS:
            page.screenshot(path=f"{SHOTS}/grid-cards-{width}.png")
        if found := page.evaluate(SPILLS):
            spills[width] = found[:2]
        if len(heights := set(page.evaluate(BADGE_HEIGHTS))) > 1:
            stretched[width] = sorted(heights)

    # Then every badge and line under a thumbnail stays inside its card, and no badge is stretched to fill a card
    # made taller by its neighbour
    assert spills == {}
    assert stretched == {}
    assert not page.js_errors
