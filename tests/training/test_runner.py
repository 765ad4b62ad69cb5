"""The runner (apps.training.yolo) called directly: a failing run shows why, and nothing is registered."""

import pytest

from apps.training import tasks
from apps.training.models import ModelVersion, TrainingRun
from apps.training.services import training_run_start
from apps.training.yolo import environment_info, execute_run, resolve_device
from tests.builders import make_training_dataset

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch):
    """Record queued tasks instead of sending them (nobody consumes them in these tests)."""
    calls = []
    monkeypatch.setattr(tasks.training_run_task, "apply_async", lambda *a, **kw: calls.append((a, kw)))
    return calls


def test_a_failing_run_is_marked_failed_with_the_reason(tmp_path, sent):
    dataset = make_training_dataset(slug="broken", count=6, val=1, test=1)
    weights = tmp_path / "broken.pt"
    weights.write_bytes(b"this is not a checkpoint")
    run = training_run_start(dataset=dataset, base=str(weights), epochs=1, imgsz=64, batch=4)
    assert sent == [((), {"args": [run.pk], "task_id": run.celery_task_id})]

    assert execute_run(run_id=run.pk, task_id=run.celery_task_id) == "failed"

    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at and run.attempts == 1
    assert run.error  # the exception, in one line
    assert "materialised" in run.log_tail and run.error.split(":")[0] in run.log_tail
    assert not ModelVersion.objects.exists()
    assert not (tmp_path / "training" / f"run-{run.pk}").exists()  # ended runs leave no working folder (issue 13)
    # a second delivery of the same message does nothing
    assert execute_run(run_id=run.pk) == "skipped"
    assert TrainingRun.objects.get(pk=run.pk).status == "failed"


def test_environment_and_device():
    info = environment_info()
    assert info["worker_host"] and info["package_versions"]["ultralytics"] and info["package_versions"]["numpy"]
    assert len(info["code_revision"]) in (0, 40)
    assert resolve_device("cpu") == "cpu" and resolve_device("auto") in ("cpu", "0")
