"""The run page's live stream through a real web server (daphne) and a private Valkey: a socket idle for 30 s is not
closed (the channel layer's Redis connections have no 5 s socket timeout, which closed it with 1011), the next event
arrives; after the web server is killed and started again the page reconnects and re-syncs, so an epoch recorded
while it was down is on the chart and the side table is current; the server logs no traceback."""

import pytest

from apps.training.models import EpochMetric, TrainingRun
from tests.builders import make_training_dataset, run_in_state
from tests.conftest import log_in
from tests.faults import private_redis
from tests.live_web import Web, in_thread
from vectormlops.events import broadcast_now

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def epoch(run, number: int) -> None:
    """Record an epoch and send its event, as the runner does (from another thread: Playwright owns this one's loop)."""
    losses = {"box": 1.0 / number, "cls": 1.0, "dfl": 1.0}
    EpochMetric.objects.create(run=run, epoch=number, losses=losses, map50=0.1 * number, seconds=5)
    data = {"id": run.pk, "epoch": number, "epochs": run.epochs, "losses": losses, "map50": 0.1 * number, "seconds": 5}
    in_thread(broadcast_now, topic=f"run.{run.pk}", event="epoch", data=data)


def test_an_idle_socket_stays_open_and_a_restarted_server_loses_no_epoch(open_browser, make_user, settings, tmp_path):
    with private_redis(settings) as (redis_url, _server):
        make_user("eng", "ml_engineer")
        run = run_in_state(make_training_dataset(slug="live", count=4, val=1, test=0), status="training")
        TrainingRun.objects.filter(pk=run.pk).update(epochs=5)
        run.refresh_from_db()
        epoch(run, 1)
        web = Web(redis_url, tmp_path / "web.log").start()
        topic = f"run.{run.pk}"
        try:
            page = open_browser()
            log_in(page, web.server, "eng")
            page.goto(f"{web.url}/training/runs/{run.pk}/")
            page.wait_for_function(f"VectorEvents.opens('{topic}') === 1")

            # idle for 30 s: the socket stays open (it used to close with 1011 every 5 s), then an event arrives
            page.wait_for_timeout(30_000)
            epoch(run, 2)
            page.wait_for_function("window.runCharts.loss.data.labels.includes(2)", timeout=10_000)
            assert page.evaluate(f"VectorEvents.opens('{topic}')") == 1
            assert page.evaluate(f"VectorEvents.closes('{topic}')") == []

            # the web server is killed; an epoch is recorded while it is down (its event reaches nobody)
            web.kill()
            epoch(run, 3)
            TrainingRun.objects.filter(pk=run.pk).update(worker_host="gpu-7", attempts=2)
            web.start()

            # the page reconnects, fetches the run as it is now, and the missed epoch is on its chart and table
            page.wait_for_function(f"VectorEvents.opens('{topic}') >= 2", timeout=60_000)
            page.wait_for_function("window.runCharts.loss.data.labels.includes(3)", timeout=10_000)
            assert page.evaluate("window.runCharts.loss.data.labels") == [1, 2, 3]
            assert page.locator('#epoch-table tbody tr[data-epoch="3"]').count() == 1
            assert page.text_content('[data-run-field="worker_host"]') == "gpu-7"  # the side table too
            assert page.text_content('[data-run-field="attempts"]') == "2"
            epoch(run, 4)  # and live events flow again
            page.wait_for_function("window.runCharts.loss.data.labels.includes(4)", timeout=10_000)
            page.screenshot(path=str(tmp_path / "run-live.png"), full_page=True)
            assert page.js_errors == []
        finally:
            web.stop()
        assert "Traceback" not in web.output()


def test_the_dataset_page_counts_images_that_arrived_while_the_server_was_down(
    open_browser, make_user, settings, tmp_path
):
    import io

    from apps.datasets.services import image_ingest
    from tests.builders import jpeg, make_dataset

    with private_redis(settings) as (redis_url, _server):
        make_user("ann", "annotator")
        dataset = make_dataset("arrivals")
        image_ingest(dataset=dataset, fileobj=io.BytesIO(jpeg(1)), source="upload")
        web = Web(redis_url, tmp_path / "web.log").start()
        topic = "dataset.arrivals"
        try:
            page = open_browser()
            log_in(page, web.server, "ann")
            page.goto(f"{web.url}/datasets/arrivals/")
            page.wait_for_function(f"VectorEvents.opens('{topic}') === 1")
            # the first re-sync has fetched the newest images (their ids are the baseline for arrivals)
            page.wait_for_function(f"VectorEvents.synced('{topic}') >= 1")
            assert "d-none" in page.get_attribute("#new-images", "class")

            # two images arrive while the web server is down: their events reach nobody
            web.kill()
            for seed in (2, 3):  # in_thread closes the thread's database connection (PostgreSQL drops the database)
                in_thread(image_ingest, dataset=dataset, fileobj=io.BytesIO(jpeg(seed)), source="camera")
            web.start()

            page.wait_for_function(f"VectorEvents.opens('{topic}') >= 2", timeout=60_000)
            page.wait_for_selector("#new-images:not(.d-none)")
            assert page.text_content("#new-count") == "2"
            assert page.js_errors == []
        finally:
            web.stop()
        assert "Traceback" not in web.output()
