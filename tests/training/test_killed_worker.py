"""A worker killed with SIGKILL mid-run: the run must not stay in `training` forever (the sweeper takes it)."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings

from apps.training.models import ModelVersion, TrainingRun
from apps.training.services import training_run_start, training_runs_sweep
from tests.builders import make_training_dataset
from tests.conftest import test_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def purge_training_queue():
    from vectormlops.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("training")


@pytest.fixture
def subprocess_worker(tmp_path):
    """`celery worker -Q training --pool solo` as a child process on the test database and the same broker."""
    purge_training_queue()
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "TRAINING_DIR": str(settings.TRAINING_DIR),
    }
    log = open(tmp_path / "worker.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "vectormlops", "worker", "-Q", "training", "--pool", "solo",
         "-n", f"killme-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield process, tmp_path / "worker.log"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()
        purge_training_queue()


def test_killed_worker_run_is_requeued_by_the_sweeper(subprocess_worker, ml_engineer):
    process, log_path = subprocess_worker
    dataset = make_training_dataset(slug="killed", count=16)
    run = training_run_start(dataset=dataset, epochs=500, imgsz=64, batch=8, seed=0, user=ml_engineer)

    # given the worker is in the middle of training (at least one epoch recorded)
    deadline = time.monotonic() + 150
    while not (TrainingRun.objects.filter(pk=run.pk, status="training").exists() and run.epoch_metrics.exists()):
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)

    # when it is killed with SIGKILL (no clean-up of any kind runs)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    run.refresh_from_db()
    assert run.status == "training" and run.attempts == 1
    old_task = run.celery_task_id

    # then the sweeper re-queues it once (attempt 1 of 2), under a new task id, and nothing was registered
    result = training_runs_sweep(heartbeat_timeout_s=0)
    run.refresh_from_db()
    assert result["requeued"] == [run.pk] and result["failed"] == []
    assert run.status == "queued" and run.attempts == 1 and run.celery_task_id != old_task
    assert "worker lost" in run.log_tail
    assert not ModelVersion.objects.filter(dataset=dataset).exists()
