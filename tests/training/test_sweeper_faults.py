"""The sweeper under the faults it meets: a broker that loses its messages (FLUSHDB on a private Valkey), a live
worker whose database heartbeats fail, a worker killed with -9 in the middle of an import, a live import busy with
one long step, and the folders that ended runs leave behind. Every broker fault is made on a private Valkey, never on
a shared Redis."""

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from apps.datasets.models import Image, ImportJob
from apps.datasets.services import import_job_create, import_rollback
from apps.datasets.services.imports import import_jobs_sweep
from apps.training import services
from apps.training.models import TrainingRun
from tests.builders import jpeg, make_dataset, make_training_dataset, run_in_state
from tests.conftest import test_database_url
from tests.faults import private_redis
from vectormlops.broker import broker_messages


@pytest.fixture
def private_broker(settings):
    """This process and the workers a test starts use a private Valkey: yields (url, server)."""
    with private_redis(settings) as (url, server):
        yield url, server


def runs_in_broker(queue: str = "training") -> list[int]:
    return [m["args"][0] for m in broker_messages([queue]) or [] if m["task"].endswith("training_run_task")]


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


@pytest.mark.django_db(transaction=True)
def test_a_queued_run_whose_message_the_broker_lost_is_published_again(private_broker):
    url, server = private_broker
    run = services.training_run_start(dataset=make_training_dataset(slug="flushed"), epochs=1, imgsz=64, batch=4)
    assert runs_in_broker() == [run.pk]

    # a fresh message is left alone, and so is a queued run within its grace period
    assert services.training_runs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))["republished"] == []

    # when the broker loses it (FLUSHDB, or a restart without persistence)
    redis.Redis.from_url(url).flushdb()
    assert runs_in_broker() == []
    assert services.training_runs_sweep()["republished"] == []  # still within the grace period: not judged yet

    result = services.training_runs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))

    run.refresh_from_db()
    assert result["republished"] == [run.pk] and run.status == "queued"
    assert runs_in_broker() == [run.pk]
    assert "queue message was lost" in run.log_tail

    # a broker that cannot be read judges nobody
    redis.Redis.from_url(url).flushdb()
    server.stop()
    assert services.training_runs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))["republished"] == []


TAKE_AND_HANG = """
import sys, time
from kombu import Connection
with Connection(sys.argv[1]) as connection:
    queue = connection.SimpleQueue(sys.argv[2])
    message = queue.get(timeout=30)  # delivered, never acknowledged: the worker dies before starting the task
    print("taken", flush=True)
    time.sleep(600)
"""


def take_message_and_die(url: str, queue: str) -> None:
    """A worker that takes one message off the queue and is killed with -9 before it starts the task (a raw kombu
    consumer): the message stays in the broker's unacknowledged hash until the visibility timeout (hours)."""
    consumer = subprocess.Popen(
        [sys.executable, "-c", TAKE_AND_HANG, url, queue], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert consumer.stdout.readline().strip() == b"taken"
    finally:
        os.killpg(consumer.pid, signal.SIGKILL)
        consumer.wait(timeout=30)


def delivered(queue: str) -> list[dict]:
    return [m for m in broker_messages([queue]) if m["tag"] is not None]


@pytest.mark.django_db(transaction=True)
def test_a_queued_run_whose_message_a_dead_worker_took_is_put_back_and_claimed_once(private_broker):
    url, _server = private_broker
    run = services.training_run_start(dataset=make_training_dataset(slug="taken"), epochs=1, imgsz=64, batch=4)
    take_message_and_die(url, "training")
    assert [m["args"] for m in delivered("training")] == [[run.pk]] and runs_in_broker() == [run.pk]

    # a message delivered within the grace period is left alone, even for a run queued long ago
    TrainingRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(hours=1))
    assert services.training_runs_sweep()["republished"] == []

    # once it has been delivered for longer than the grace period with the run still queued, its worker is gone
    result = services.training_runs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))

    run.refresh_from_db()
    assert result["republished"] == [run.pk] and run.status == "queued"
    assert "taken by a worker that stopped" in run.log_tail
    # the message is back in the queue, once: nothing is left unacknowledged to be delivered again after hours
    assert delivered("training") == [] and runs_in_broker() == [run.pk]
    assert services.training_runs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))["republished"] == []

    # a worker takes it and claims the run; a second delivery of the same run (the old message) does nothing
    (message,) = broker_messages(["training"])
    claimed = services.training_run_claim(run_id=message["args"][0], task_id=message["id"])
    assert claimed is not None and claimed.attempts == 1
    assert services.training_run_claim(run_id=run.pk, task_id=message["id"]) is None
    run.refresh_from_db()
    assert run.status == "preparing" and run.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_queued_import_whose_message_a_dead_worker_took_is_put_back_and_runs_once(private_broker):
    from apps.datasets.tasks import dataset_import_task

    url, _server = private_broker
    job = import_job_create(dataset=make_dataset("taken-import"), fileobj=io.BytesIO(import_zip(2)), filename="a.zip")
    take_message_and_die(url, "default")
    assert [m["args"] for m in delivered("default")] == [[job.pk]]
    assert import_jobs_sweep()["republished"] == []  # within the grace period

    result = import_jobs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))

    assert result == {"republished": [job.pk], "failed": []}
    assert delivered("default") == [] and [m["args"] for m in broker_messages(["default"])] == [[job.pk]]
    # the job runs once; a second delivery of it does nothing
    assert dataset_import_task(job.pk) == "succeeded"
    assert dataset_import_task(job.pk) == "skipped"
    job.refresh_from_db()
    assert job.status == "succeeded" and job.report["imported"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_live_run_whose_database_heartbeats_fail_is_not_declared_lost(monkeypatch):
    from apps.training import yolo

    run = run_in_state(make_training_dataset(slug="glitch"), status="training", attempts=1)
    # the database heartbeat fails every time (a glitch, lock waits), as if for minutes
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))

    def failing(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "training_run_heartbeat", failing)
    heartbeat = yolo.Heartbeat(run.pk, 1, yolo.LogTail(), interval_s=0.05)
    heartbeat.start()
    try:
        deadline = time.monotonic() + 10
        while services.lifecycle._last_pulse(run) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        result = services.training_runs_sweep(heartbeat_timeout_s=60)
    finally:
        heartbeat.stop_event.set()
        heartbeat.join(timeout=5)

    run.refresh_from_db()
    assert result["requeued"] == [] and result["failed"] == []
    assert run.status == "training" and run.attempts == 1

    # once the worker is really gone (no pulse either), the same run is taken
    result = services.training_runs_sweep(heartbeat_timeout_s=60, now=later(600))
    assert result["requeued"] == [run.pk]


@pytest.mark.django_db(transaction=True)
def test_a_superseded_attempt_cannot_end_the_run_it_lost():
    run = run_in_state(make_training_dataset(slug="superseded"), status="training", attempts=1)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert services.training_runs_sweep(heartbeat_timeout_s=60)["requeued"] == [run.pk]

    # the old worker wakes up, finds its run no longer its own and stops: the run stays queued for its next attempt
    assert services.training_run_finish(run=run, status="cancelled", attempt=1) is False
    run.refresh_from_db()
    assert run.status == "queued" and run.error == "" and not run.cancel_requested


@pytest.mark.django_db
def test_working_folders_of_ended_runs_are_removed(tmp_path):
    dataset = make_training_dataset(slug="folders")
    failed = run_in_state(dataset, status="failed")
    other = make_training_dataset(slug="busy", count=4, val=1, test=0)
    active = run_in_state(other, status="training")
    folders = {pk: services.run_folder(pk) for pk in (failed.pk, active.pk, 999_999)}
    for folder in folders.values():
        (folder / "ultralytics").mkdir(parents=True)
        (folder / "ultralytics" / "last.pt").write_bytes(b"x" * 1000)
    keep = settings.TRAINING_DIR / "notes.txt"
    keep.write_text("not a run folder")

    assert services.training_folders_prune() == sorted([failed.pk, 999_999])

    assert not folders[failed.pk].exists() and not folders[999_999].exists()
    assert folders[active.pk].is_dir() and keep.exists()


def import_zip(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(f"images/img{index:04d}.jpg", jpeg(index, width=320, height=240))
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True)
def test_an_import_whose_message_was_lost_is_published_again(private_broker):
    url, _server = private_broker
    job = import_job_create(dataset=make_dataset("lost-import"), fileobj=io.BytesIO(import_zip(1)), filename="a.zip")
    # a message still in the broker is left alone
    assert import_jobs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))["republished"] == []

    redis.Redis.from_url(url).flushdb()
    assert import_jobs_sweep()["republished"] == []  # still within the grace period: not judged yet

    result = import_jobs_sweep(now=later(settings.TRAINING_QUEUED_GRACE_S + 1))

    assert result == {"republished": [job.pk], "failed": []}
    assert [m["args"] for m in broker_messages(["default"])] == [[job.pk]]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_import_whose_worker_is_killed_does_not_stay_running(private_broker, tmp_path):
    url, _server = private_broker
    dataset = make_dataset("killed-import")
    job = import_job_create(dataset=dataset, fileobj=io.BytesIO(import_zip(400)), filename="big.zip")
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "TRAINING_DIR": str(settings.TRAINING_DIR),
    }
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "vectormlops", "worker", "-Q", "default", "--pool", "prefork", "-c", "1",
         "-n", f"importer-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        # given the import is under way in the worker
        deadline = time.monotonic() + 120
        while not ImportJob.objects.filter(pk=job.pk, status="running", done__gt=0).exists():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.1)
        # when the whole worker (main process and its child) is killed with -9
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        log.close()
    job.refresh_from_db()
    assert job.status == "running"
    # its last heartbeat is recent: the sweeper does not judge it yet
    assert import_jobs_sweep() == {"republished": [], "failed": []}

    # then, once no heartbeat came for the timeout, the sweeper fails it with a reason and keeps what it imported
    result = import_jobs_sweep(now=later(settings.IMPORT_HEARTBEAT_TIMEOUT_S + 1))

    job.refresh_from_db()
    assert result == {"republished": [], "failed": [job.pk]}
    assert job.status == "failed" and job.finished_at and "worker running this import stopped" in job.error
    assert "no heartbeat for" in job.error and f"after {job.done} of 400 files" in job.error and 0 < job.done < 400
    assert "can be rolled back" in job.error
    assert import_jobs_sweep(now=later(settings.IMPORT_HEARTBEAT_TIMEOUT_S + 1)) == {"republished": [], "failed": []}

    # what it imported was recorded as it went, with the rows themselves: every image it stored is in its undo list
    stored = set(Image.objects.filter(dataset=dataset).values_list("pk", flat=True))
    assert len(stored) == job.done and {entry["image"] for entry in job.report["undo"]} == stored

    # so the killed import rolls back exactly what it imported
    job = import_rollback(job=job)

    assert job.report["rollback"]["images_removed"] == len(stored) and job.report["rollback"]["kept"] == []
    assert not Image.objects.filter(dataset=dataset).exists()


@pytest.mark.django_db(transaction=True)
def test_a_running_import_a_live_worker_executes_is_left_alone(
    private_broker, celery_worker_thread, monkeypatch, settings
):
    from apps.datasets.services import imports

    settings.IMPORT_HEARTBEAT_S = 0.05
    started, release = threading.Event(), threading.Event()
    real = imports.dataset_import

    def slow_import(**kwargs):
        started.set()  # one step that takes long (a huge file): no progress is reported meanwhile
        release.wait(30)
        return real(**kwargs)

    monkeypatch.setattr(imports, "dataset_import", slow_import)
    job = import_job_create(dataset=make_dataset("alive-import"), fileobj=io.BytesIO(import_zip(2)), filename="a.zip")
    assert started.wait(30)
    try:
        # given the job looks as if its last sign of life was ten minutes ago
        long_ago = timezone.now() - timedelta(minutes=10)
        ImportJob.objects.filter(pk=job.pk).update(started_at=long_ago, heartbeat_at=long_ago)
        # the worker's heartbeat, beating while the step runs, shows it alive again
        deadline = time.monotonic() + 30
        while ImportJob.objects.get(pk=job.pk).heartbeat_at <= long_ago:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        assert import_jobs_sweep() == {"republished": [], "failed": []}
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while ImportJob.objects.get(pk=job.pk).status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ImportJob.objects.get(pk=job.pk).status == "succeeded"
