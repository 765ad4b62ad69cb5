"""The run page in a real browser (Debian's Chromium through Playwright): the chart is drawn from the stored epochs
and grows when an "epoch" event arrives on topic run.<id> (the live server has no WebSocket, so the test hands the
event to the page's handler)."""

import pytest

from apps.training.models import EpochMetric
from tests.builders import make_training_dataset, run_in_state
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_run_page_chart_grows_with_epoch_events(open_browser, live_server, make_user, monkeypatch):
    from apps.training import tasks

    monkeypatch.setattr(tasks.training_run_task, "apply_async", lambda *a, **kw: None)  # no worker here
    make_user("eng", "ml_engineer")
    dataset = make_training_dataset(slug="browse", count=4, val=1, test=0)
    run = run_in_state(dataset, status="training")
    EpochMetric.objects.create(run=run, epoch=1, losses={"box": 1.0, "cls": 2.0, "dfl": 1.0}, map50=0.1, seconds=2)

    page = open_browser()
    errors = page.js_errors
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/training/runs/{run.pk}/")
    page.wait_for_load_state("load")
    page.wait_for_function("!!(window.runChart && window.runEvents)")
    assert page.evaluate("window.runChart.data.labels") == [1]
    assert page.evaluate("window.runChart.data.datasets[0].data") == [4.0]

    page.evaluate(
        "window.runEvents('epoch', {epoch: 2, epochs: 1, losses: {box: 0.5, cls: 1, dfl: 0.5}, map50: 0.4,"
        " map50_95: 0.2, log_tail: 'epoch two done'})"
    )
    assert page.evaluate("window.runChart.data.labels") == [1, 2]
    assert page.evaluate("window.runChart.data.datasets[1].data") == [0.1, 0.4]
    assert page.text_content("#run-log") == "epoch two done"
    assert page.text_content("#run-progress").strip() == "2 / 1 epochs"

    page.evaluate("window.runEvents('status', {status: 'training', cancel_requested: true})")
    assert "d-none" not in page.get_attribute("#run-cancelling", "class")
    assert errors == []
