"""What a dataset holds: the diff of two frozen versions, the overview's statistics, and the read-only image page."""

import pytest
from django.urls import reverse

from apps.datasets import selectors
from apps.datasets.models import Image
from apps.datasets.services import annotation_set, version_freeze
from apps.labeling.models import Prediction, ReviewEvent
from tests.builders import make_image

pytestmark = pytest.mark.django_db

BOX_A = {"class_id": 0, "box": [10, 8, 30, 20]}
BOX_B = {"class_id": 1, "box": [50, 30, 20, 20]}


def test_the_diff_of_two_versions_names_added_removed_relabelled_and_moved_images(dataset, client, ml_engineer):
    kept, relabelled, removed, moved = (
        make_image(dataset, seed, boxes=[BOX_A], status="approved") for seed in (1, 2, 3, 4)
    )
    old = version_freeze(dataset=dataset)
    added = make_image(dataset, 5, boxes=[BOX_B], status="approved")
    annotation_set(image=relabelled, boxes=[BOX_A, BOX_B])
    Image.objects.filter(pk=removed.pk).update(status="rejected")
    Image.objects.filter(pk=moved.pk).update(split="test" if moved.split != "test" else "val")
    new = version_freeze(dataset=dataset)

    diff = selectors.version_diff(old, new)
    assert diff == {
        "added": [added.pk],
        "removed": [removed.pk],
        "relabelled": [relabelled.pk],
        "moved": [moved.pk],
        "unchanged": 3,
    }
    client.force_login(ml_engineer)
    page = client.get(
        reverse("datasets:version_diff", args=[dataset.slug, new.number]) + f"?against={old.number}"
    ).content.decode()
    assert "1 added · 1 removed · 1 relabelled" in page
    assert f'data-section="added">\n  <a class="card" href="/datasets/{dataset.slug}/image?image={added.pk}"' in page
    assert kept.pk not in diff["added"] + diff["removed"] + diff["relabelled"]


def test_the_overview_counts_boxes_sizes_aspects_and_brightness(dataset, client, ml_engineer):
    # 96x64 images: BOX_A covers sqrt(600/6144) = 0.31 of the image, aspect 1.5; BOX_B 0.26, aspect 1.0.
    make_image(dataset, 1, boxes=[BOX_A, BOX_B], status="approved")
    make_image(dataset, 2, boxes=[BOX_B], status="submitted")
    make_image(dataset, 3, boxes=[], status="approved")
    make_image(dataset, 4)  # unlabeled: counted as an image, its (no) boxes are not
    overview = selectors.dataset_overview(dataset)
    assert overview["classes"] == ["vector", "cube"] and overview["boxes_per_class"] == [1, 2]
    assert overview["boxes_per_image"][:3] == [1, 1, 1]
    assert overview["box_sizes"][6] == 1 and overview["box_sizes"][5] == 2 and sum(overview["box_sizes"]) == 3
    edges = overview["aspect_edges"]
    assert overview["box_aspects"][edges.index(1.5)] == 1 and overview["box_aspects"][edges.index(1.0)] == 2
    assert sum(row["total"] for row in overview["per_split"].values()) == 4
    assert sum(sum(bins) for bins in overview["brightness"].values()) == 4
    assert overview["sources"] == {"upload": 4}
    client.force_login(ml_engineer)
    page = client.get(reverse("datasets:overview", args=[dataset.slug]))
    assert page.status_code == 200 and b"chart-brightness" in page.content and b"overview.js" in page.content


def test_the_grid_opens_the_image_page_for_engineers_and_labeling_for_annotators(
    dataset, client, ml_engineer, annotator
):
    image = make_image(dataset, 1, boxes=[BOX_A], status="approved")
    client.force_login(ml_engineer)
    grid = client.get(reverse("datasets:detail", args=[dataset.slug])).content.decode()
    assert f'href="/datasets/{dataset.slug}/image?image={image.pk}"' in grid and 'class="thumb-box-0"' in grid
    client.force_login(annotator)
    grid = client.get(reverse("datasets:detail", args=[dataset.slug])).content.decode()
    assert f"/label/{dataset.slug}" in grid or "labeling" in grid
    assert client.get(reverse("datasets:image_detail", args=[dataset.slug]) + "?image=999999").status_code == 404


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_image_page_draws_labels_and_the_prediction_and_toggles_them(
    open_browser, live_server, make_user, tmp_path
):
    from tests.builders import make_dataset

    engineer = make_user("eng", "ml_engineer")
    dataset = make_dataset(slug="imgpage")
    image = make_image(dataset, 1, boxes=[BOX_A, BOX_B], status="submitted", width=320, height=180)
    ReviewEvent.objects.create(image=image, reviewer=engineer, decision="approve", annotation_version=1)
    Image.objects.filter(pk=image.pk).update(status="approved")
    Prediction.objects.create(
        image=image, source="server", model_id=3, boxes=[{**BOX_A, "confidence": 0.9}], certainty=0.9
    )
    version_freeze(dataset=dataset)

    page = open_browser()
    errors = page.js_errors
    log_in_and_open = f"{live_server.url}/datasets/imgpage/"
    from tests.conftest import log_in

    log_in(page, live_server, "eng")
    page.goto(log_in_and_open)
    page.click(f'#thumb-grid a[data-image-id="{image.pk}"]')
    page.wait_for_function("!!window.imageDrawn")
    assert page.evaluate("window.imageDrawn") == [2, 1]  # labels, prediction
    assert "approve by eng" in page.text_content('[data-facts="Labelled and reviewed"]')
    assert "v1" in page.text_content("#image-versions")
    page.uncheck('#layer-toggles input[data-layer="1"]')
    assert page.evaluate("window.imageDrawn") == [2, 0]
    page.screenshot(path=str(tmp_path / "image.png"), full_page=True)
    assert errors == []
