"""The promote page in a real browser: the current verdict with its interval, and what the candidate gets wrong
beside production (per-class AP, PR and F1 curves, confusion matrices) drawn from the stored analyses."""

import pytest

from apps.deployments import services
from apps.deployments.models import Evaluation
from apps.training.models import EpochMetric, TrainingRun
from tests.builders import gate_decision_row, make_dataset, make_model
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _analysis(ap: float, matrix: list[list[int]]) -> dict:
    x = [i / 100 for i in range(101)]
    return {
        "names": ["vector"],
        "confusion_matrix": matrix,
        "ap_classes": ["vector"],
        "ap50": [min(1.0, ap + 0.2)],
        "ap50_95": [ap],
        "curve_x": x,
        "pr": {"vector": [1 - v * (1 - ap) for v in x]},
        "f1": {"vector": [ap * (1 - abs(v - 0.5)) for v in x]},
    }


def test_promote_page_draws_the_error_analysis_of_candidate_and_production(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset = make_dataset(slug="analysis", classes=("vector",))
    runs = [TrainingRun.objects.create(dataset=dataset, base="yolov8n.yaml", status="succeeded") for _ in range(2)]
    curves = ([0.2, 0.4, 0.6], [0.1, 0.25, 0.4])
    for run, values in zip(runs, curves, strict=True):
        EpochMetric.objects.bulk_create(
            EpochMetric(run=run, epoch=n, losses={"box": 1 / n, "cls": 1 / n, "dfl": 1 / n}, map50_95=value)
            for n, value in enumerate(values, start=1)
        )
    v1, v2 = make_model(dataset, 1, run=runs[0]), make_model(dataset, 2, run=runs[1])
    services.model_promote(model=v2, channel="production", reason="v2 first")
    evaluations = [
        Evaluation.objects.create(
            model=model,
            dataset=dataset,
            test_set_sha256="a" * 64,
            image_count=20,
            metrics={"overall": {}, "analysis": _analysis(ap, matrix) | conf},
        )  # fmt: skip
        # v2's analysis was stored before the matrix had a conf of its own (it was val's 0.001).
        for model, ap, matrix, conf in (
            (v1, 0.6, [[18, 3], [2, 0]], {"confusion_conf": 0.25}),
            (v2, 0.4, [[12, 6], [8, 0]], {}),
        )
    ]
    gate_decision_row(
        v1, v2, passed=True, map_diff=0.2, map_diff_ci=[0.1, 0.3],
        candidate_evaluation=evaluations[0], production_evaluation=evaluations[1],
    )  # fmt: skip

    page = open_browser()
    errors = page.js_errors
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/models/{v1.pk}/promote/")
    page.wait_for_function("!!window.analysisCharts")
    assert "(a real gain)" in page.text_content("#gate-verdict")
    assert page.evaluate("window.analysisCharts.ap.data.datasets.map(d => d.data)") == [[0.6], [0.4]]
    assert page.evaluate("window.analysisCharts.pr.data.datasets.length") == 2
    assert page.locator("table.confusion").count() == 2
    cells = page.locator('table.confusion[data-model="production"] tbody td').all_text_contents()
    assert cells == ["12", "6", "8", "0"]
    # Which predictions each matrix counts: the page says the confidence it was computed at.
    assert page.locator(".confusion-conf").all_text_contents() == ["0.25", "0.001"]
    # How both trained: the two runs' curves overlaid, and the way to the full comparison of their settings.
    page.wait_for_function("!!window.overlayCharts")
    overlaid = page.evaluate("window.overlayCharts.map50_95.data.datasets.map(d => [d.label, d.data])")
    assert overlaid == [
        [f"run #{run.pk} (model v{n})", values] for n, run, values in zip((1, 2), runs, curves, strict=True)
    ]
    compare = page.locator("#training-curves a")
    assert compare.get_attribute("href").endswith(f"runs={runs[0].pk}&runs={runs[1].pk}")
    page.screenshot(path="/tmp/decide-promote.png", full_page=True)
    assert errors == []
