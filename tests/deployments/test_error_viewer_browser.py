"""The error viewer in a real browser: every test image with ground truth and both models' predictions as
ultralytics matched them, filtered by kind of error, model, class and slice, sorted by disagreement."""

import pytest

from apps.deployments import services
from apps.deployments.models import Evaluation
from tests.builders import dataset_row, gate_decision_row, make_model, stored_image_row
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_error_viewer_filters_and_sorts_by_disagreement(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset = dataset_row(slug="errors")
    images = [stored_image_row(dataset, seed=8000 + i, brightness=(0.45, 1.5, 1.0)[i]) for i in range(3)]
    boxes = [image.annotation.boxes for image in images]
    assert all(len(b) == 1 for b in boxes)  # one robot per scene

    def hit(image, tp=True, conf=0.9):
        x, y, w, h = image.annotation.boxes[0]["box"]
        return [x, y, w, h, 0, conf, tp]

    # image 0: both find it; image 1: the candidate misses it, production finds it; image 2: candidate adds an FP.
    candidate_predictions = {
        images[0].sha256: [hit(images[0])],
        images[2].sha256: [hit(images[2]), [1, 1, 5, 5, 0, 0.8, False]],
    }
    production_predictions = {
        images[0].sha256: [hit(images[0])],
        images[1].sha256: [hit(images[1])],
        images[2].sha256: [hit(images[2])],
    }
    v1, v2 = make_model(dataset, 1), make_model(dataset, 2)
    services.model_promote(model=v2, channel="production", reason="v2 first")
    evaluations = [
        Evaluation.objects.create(
            model=model,
            dataset=dataset,
            test_set_sha256="b" * 64,
            image_count=3,
            metrics={"analysis": {"predictions": predictions}},
        )  # fmt: skip
        for model, predictions in ((v1, candidate_predictions), (v2, production_predictions))
    ]
    gate_decision_row(v1, v2, candidate_evaluation=evaluations[0], production_evaluation=evaluations[1])

    page = open_browser()
    errors = page.js_errors
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/models/{v1.pk}/errors/")
    page.wait_for_function("!!window.errorViewerShown")
    shown = lambda: page.evaluate("window.errorViewerShown")  # noqa: E731
    assert shown()[:2] == [images[1].pk, images[2].pk] and shown()[2] == images[0].pk  # most disagreement first
    page.select_option("#error-filters select[name=kind]", "missed")
    assert shown() == [images[1].pk]
    page.select_option("#error-filters select[name=kind]", "fp")
    assert shown() == [images[2].pk]
    page.select_option("#error-filters select[name=model]", "production")
    assert shown() == []
    page.select_option("#error-filters select[name=kind]", "tp")
    page.select_option("#error-filters select[name=slice]", "lighting:dark")
    assert shown() == [images[0].pk]
    page.select_option("#error-filters select[name=slice]", "")
    assert page.locator("rect.layer-production").count() == 3
    page.uncheck("#error-filters input[value=production]")
    assert page.locator("rect.layer-production").count() == 0 and page.locator("rect.layer-truth").count() == 3
    page.screenshot(path="/tmp/decide-errors.png", full_page=True)
    assert errors == []

    # The model page is the same view with what the model is and where it leads: its status, its run, promote.
    page.goto(f"{live_server.url}/models/")
    page.click(f'a[href="/models/{v1.pk}/"]')
    page.wait_for_function("!!window.errorViewerShown")
    header = page.text_content("#model-header")
    assert str(v1) in header and "candidate" in header and f"Promote v{v1.number}" in header
    assert page.locator("#error-viewer-link").count() == 0  # it does not link to itself
    assert len(shown()) == 3
    page.screenshot(path="/tmp/decide-model.png", full_page=True)
    assert errors == []
