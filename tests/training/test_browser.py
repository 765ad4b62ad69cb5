"""The run and comparison pages in a real browser (Debian's Chromium through Playwright). The run page draws its loss
and metric charts and its epoch table from the stored epochs and grows them when an "epoch" event arrives on topic
run.<id> (the live server has no WebSocket, so the test hands the event to the page's handler)."""

import pytest

from apps.training.models import EpochMetric, TrainingRun
from tests.builders import make_training_dataset, run_in_state
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_worker(monkeypatch):
    from apps.training import tasks

    monkeypatch.setattr(tasks.training_run_task, "apply_async", lambda *a, **kw: None)  # no worker here


def test_run_page_charts_table_and_eta_grow_with_epoch_events(
    open_browser, live_server, make_user, no_worker, tmp_path
):
    make_user("eng", "ml_engineer")
    dataset = make_training_dataset(slug="browse", count=4, val=1, test=0)
    run = run_in_state(dataset, status="training")
    TrainingRun.objects.filter(pk=run.pk).update(epochs=10)
    losses = {"box": 1.0, "cls": 2.0, "dfl": 1.0, "val_box": 1.5, "val_cls": 2.5, "val_dfl": 1.25}
    EpochMetric.objects.create(run=run, epoch=1, losses=losses, precision=0.2, map50=0.1, seconds=30)

    page = open_browser()
    errors = page.js_errors
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/training/runs/{run.pk}/")
    page.wait_for_function("!!(window.runCharts && window.runEvents)")
    loss_series = page.evaluate("Object.fromEntries(window.runCharts.loss.data.datasets.map(d => [d.key, d.data]))")
    assert loss_series["box"] == [1.0] and loss_series["val_dfl"] == [1.25]
    assert page.evaluate("window.runCharts.metrics.data.datasets.map(d => d.data[0])") == [0.2, None, 0.1, None]
    assert page.locator("#epoch-table tbody tr").count() == 1
    assert page.text_content("#run-eta") == "about 5 min left"  # 9 epochs to go at 30 s each

    page.evaluate(
        "window.runEvents('epoch', {epoch: 2, epochs: 10, losses: {box: 0.5, cls: 1, dfl: 0.5, val_box: 0.75},"
        " precision: 0.5, recall: 0.4, map50: 0.4, map50_95: 0.2, seconds: 10, log_tail: 'epoch two done'})"
    )
    assert page.evaluate("window.runCharts.loss.data.labels") == [1, 2]
    assert page.evaluate("window.runCharts.metrics.data.datasets[2].data") == [0.1, 0.4]
    row = page.locator('#epoch-table tbody tr[data-epoch="2"] td').all_text_contents()
    assert row == ["2", "0.5000", "1.0000", "0.5000", "0.7500", "", "", "0.500", "0.400", "0.400", "0.200", "10.0"]
    assert page.text_content("#run-eta") == "about 3 min left"  # 8 epochs at the mean of 30 s and 10 s: 160 s
    assert page.text_content("#run-log") == "epoch two done"
    assert page.text_content("#run-progress").strip() == "2 / 10 epochs"

    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
    page.evaluate("window.runEvents('status', {status: 'training', cancel_requested: true})")
    assert "d-none" not in page.get_attribute("#run-cancelling", "class")
    assert errors == []


def test_two_runs_picked_on_the_list_overlay_their_curves(open_browser, live_server, make_user, no_worker, tmp_path):
    make_user("eng", "ml_engineer")
    dataset = make_training_dataset(slug="overlay", count=4, val=1, test=0)
    first = run_in_state(dataset, status="succeeded")
    second = run_in_state(dataset, status="succeeded")
    TrainingRun.objects.filter(pk=second.pk).update(imgsz=128, epochs=3)
    for run, maps in ((first, [0.1, 0.3]), (second, [0.2, 0.5, 0.6])):
        for epoch, value in enumerate(maps, start=1):
            EpochMetric.objects.create(run=run, epoch=epoch, losses={"box": 1, "cls": 1, "dfl": 1}, map50=value)

    page = open_browser()
    errors = page.js_errors
    log_in(page, live_server, "eng")
    page.goto(f"{live_server.url}/training/runs/?dataset=overlay")
    page.check(f'#run-table input[value="{first.pk}"]')
    page.check(f'#run-table input[value="{second.pk}"]')
    page.click("#compare-button")
    page.wait_for_function("!!window.overlayCharts")
    chart = "window.overlayCharts.map50"
    assert page.evaluate(f"{chart}.data.labels") == [1, 2, 3]
    assert page.evaluate(f"{chart}.data.datasets.map(d => d.data)") == [[0.1, 0.3, None], [0.2, 0.5, 0.6]]
    assert page.evaluate("window.overlayCharts.train_loss.data.datasets[0].data") == [3, 3, None]
    differing = page.locator("#settings-table tr.differs th").all_text_contents()
    assert differing == ["epochs", "imgsz"]
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert errors == []
