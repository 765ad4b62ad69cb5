"""Services of training without a worker: start rules, cancel, claim, registration, sweeper, schedule, beat."""

import hashlib
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.datasets.models import Image
from apps.training import hooks, services
from apps.training.models import ModelArtifact, ModelVersion, RetrainPolicy, TrainingRun
from apps.training.signals import model_trained
from tests.builders import make_training_dataset, register_fake_model, run_in_state
from vectormlops.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(request):
    """Install a production-model answer for the test (what deployments does in its ready())."""
    live = {}
    previous = hooks.install_production_model_provider(lambda dataset: live.get(dataset.pk))
    yield live
    hooks.install_production_model_provider(previous)  # deployments' own answer, for the tests that follow


def test_start_freezes_a_version_and_queues_after_commit(
    training_dataset, ml_engineer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        run = services.training_run_start(dataset=training_dataset, epochs=2, imgsz=64, batch=4, user=ml_engineer)
    assert run.status == "queued" and run.base == "yolov8n.yaml" and run.base_model is None
    assert run.dataset_version.number == 1 and run.dataset_version.image_count == 16
    assert run.created_by == ml_engineer and run.celery_task_id
    assert len(callbacks) >= 1  # the task is sent only once the transaction commits


def test_one_active_run_per_dataset(training_dataset):
    first = services.training_run_start(dataset=training_dataset, epochs=1, imgsz=64, batch=4)
    with pytest.raises(Conflict) as err:
        services.training_run_start(dataset=training_dataset, epochs=1, imgsz=64, batch=4)
    assert err.value.code == "run_in_progress" and err.value.details["run_id"] == first.pk
    services.training_run_cancel(run=first)
    assert services.training_run_start(dataset=training_dataset, epochs=1, imgsz=64, batch=4).pk != first.pk


@pytest.mark.parametrize(
    "base, code",
    [
        ("yolov8n.pt", "invalid_base"),  # a bare weights name would download: refused
        ("https://example.com/x.pt", "invalid_base"),
        ("nosuchmodel.yaml", "invalid_base"),
        ("model.bin", "invalid_base"),
        ("production", "no_production_model"),
    ],
)
def test_bad_bases_are_refused_before_anything_is_written(training_dataset, base, code):
    with pytest.raises(ValidationFailed) as err:
        services.training_run_start(dataset=training_dataset, base=base, epochs=1, imgsz=64, batch=4)
    assert err.value.code == code
    assert not TrainingRun.objects.exists() and not training_dataset.versions.exists()


def test_bad_hyperparameters_are_refused(training_dataset):
    with pytest.raises(ValidationFailed):
        services.training_run_start(dataset=training_dataset, epochs=0, imgsz=64, batch=4)
    with pytest.raises(ValidationFailed):
        services.training_run_start(dataset=training_dataset, epochs=1, imgsz=65, batch=4)


def test_default_base_is_the_production_model_when_one_exists(training_dataset, production, tmp_path):
    earlier = run_in_state(training_dataset, status="evaluating")
    model = register_fake_model(earlier, tmp_path)
    production[training_dataset.pk] = model
    run = services.training_run_start(dataset=training_dataset, epochs=1, imgsz=64, batch=4)
    assert run.base == "production" and run.base_model == model
    assert services.training_run_start  # explicit yaml still possible on another dataset
    other = make_training_dataset(slug="other", count=4, val=1, test=0)
    assert services.training_run_start(dataset=other, epochs=1, imgsz=64, batch=4).base == "yolov8n.yaml"


def test_cancel_of_a_queued_run_ends_it_now_and_the_worker_skips_it(training_dataset):
    run = services.training_run_start(dataset=training_dataset, epochs=1, imgsz=64, batch=4)
    run = services.training_run_cancel(run=run)
    assert run.status == "cancelled" and run.cancel_requested and run.finished_at
    assert services.training_run_claim(run_id=run.pk) is None
    with pytest.raises(Conflict) as err:
        services.training_run_cancel(run=run)
    assert err.value.code == "run_not_active"


def test_cancel_of_a_running_run_only_sets_the_flag(training_dataset):
    run = run_in_state(training_dataset, status="training")
    run = services.training_run_cancel(run=run)
    assert run.status == "training" and run.cancel_requested
    assert services.training_run_heartbeat(run_id=run.pk, attempt=1) is True


def test_claim_moves_a_queued_run_to_preparing_once(training_dataset):
    run = services.training_run_start(dataset=training_dataset, epochs=1, imgsz=64, batch=4)
    claimed = services.training_run_claim(run_id=run.pk, task_id="t1", environment={"worker_host": "w1"})
    assert claimed.status == "preparing" and claimed.attempts == 1 and claimed.worker_host == "w1"
    assert services.training_run_claim(run_id=run.pk, task_id="t2") is None  # a redelivered message
    assert services.training_run_claim(run_id=999_999) is None


def test_register_stores_artifacts_numbers_models_and_announces_on_commit(
    training_dataset, tmp_path, django_capture_on_commit_callbacks
):
    announced = []
    model_trained.connect(lambda **kw: announced.append(kw), weak=False, dispatch_uid="svc-test")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run = run_in_state(training_dataset, status="evaluating")
            model = register_fake_model(run, tmp_path, payload=b"abc")
    finally:
        model_trained.disconnect(dispatch_uid="svc-test")
    run.refresh_from_db()
    assert run.status == "succeeded" and model.number == 1 and model.classes == ["vector"]
    assert [(a["sender"], a["model_version"], a["run"].pk) for a in announced] == [(ModelVersion, model, run.pk)]
    for artifact in model.artifacts.all():
        content = b"abc." + artifact.format.encode()
        assert artifact.sha256 == hashlib.sha256(content).hexdigest() and artifact.size == len(content)
        assert default_storage.open(artifact.storage_path).read() == content
        assert artifact.storage_path.startswith(f"models/{training_dataset.slug}/1/")
    second = register_fake_model(run_in_state(training_dataset, status="evaluating"), tmp_path)
    assert second.number == 2


def test_a_failed_registration_leaves_no_model_and_no_files(training_dataset, tmp_path, monkeypatch):
    run = run_in_state(training_dataset, status="evaluating")
    from django.core.files.storage import FileSystemStorage

    monkeypatch.setattr(FileSystemStorage, "size", lambda self, name: -1)  # the store "lost" bytes
    with pytest.raises(OSError):
        register_fake_model(run, tmp_path)
    run.refresh_from_db()
    assert run.status == "evaluating"
    assert not ModelVersion.objects.exists() and not ModelArtifact.objects.exists()
    assert not default_storage.exists(f"models/{training_dataset.slug}/1/model.pt")


def test_a_cancelled_or_superseded_run_is_never_registered(training_dataset, tmp_path):
    run = run_in_state(training_dataset, status="evaluating", cancel_requested=True)
    with pytest.raises(Conflict):
        register_fake_model(run, tmp_path)
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=False)
    run.refresh_from_db()
    with pytest.raises(Conflict):
        services.model_version_register(
            run=run, attempt=run.attempts + 1, weights_path=tmp_path, onnx_path=tmp_path, metrics={}, final_metrics={}
        )
    assert not ModelVersion.objects.exists()


def test_sweeper_requeues_once_then_fails(training_dataset, django_capture_on_commit_callbacks):
    old = timezone.now() - timedelta(minutes=10)
    stale = run_in_state(training_dataset, status="training", attempts=1, heartbeat_at=old)
    other = make_training_dataset(slug="fresh", count=4, val=1, test=0)
    fresh = run_in_state(other, status="training", attempts=1, heartbeat_at=timezone.now())

    with django_capture_on_commit_callbacks() as callbacks:
        result = services.training_runs_sweep(heartbeat_timeout_s=60)
    assert result["requeued"] == [stale.pk] and result["failed"] == [] and result["republished"] == []
    assert len(callbacks) >= 1  # the task is sent again
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "queued" and fresh.status == "training"

    # the second attempt dies too: now it fails, with the reason, and nothing is registered
    TrainingRun.objects.filter(pk=stale.pk).update(status="training", attempts=2, heartbeat_at=old)
    result = services.training_runs_sweep(heartbeat_timeout_s=60)
    stale.refresh_from_db()
    assert result["requeued"] == [] and result["failed"] == [stale.pk]
    assert stale.status == "failed" and stale.error.startswith("Worker lost: the worker running it stopped answering")
    assert "attempt 2 of 2" in stale.error and stale.error.endswith("No attempts left.") and stale.finished_at
    assert not ModelVersion.objects.exists()


def test_schedule_starts_exactly_the_due_datasets(production, tmp_path):
    now = timezone.now()
    # due: 16 new approved images, threshold 10
    due_new = make_training_dataset(slug="due-new", count=16)
    RetrainPolicy.objects.create(dataset=due_new, min_new_approved_images=10, epochs=3, imgsz=96, batch=4)
    # not due: below the threshold
    below = make_training_dataset(slug="below", count=6, val=1, test=1)
    RetrainPolicy.objects.create(dataset=below, min_new_approved_images=10)
    # not due: disabled
    disabled = make_training_dataset(slug="disabled", count=16)
    RetrainPolicy.objects.create(dataset=disabled, enabled=False, min_new_approved_images=1)
    # not due: already training
    busy = make_training_dataset(slug="busy", count=16)
    run_in_state(busy, status="training")
    RetrainPolicy.objects.create(dataset=busy, min_new_approved_images=1)
    # not due: every approved image was in the last run's version, production model young
    trained = make_training_dataset(slug="trained", count=16)
    young = register_fake_model(run_in_state(trained, status="evaluating"), tmp_path)
    production[trained.pk] = young
    RetrainPolicy.objects.create(dataset=trained, min_new_approved_images=1, max_model_age_days=7)
    # due: nothing new, but the production model and the last run are older than the maximum age
    aged = make_training_dataset(slug="aged", count=16)
    old_model = register_fake_model(run_in_state(aged, status="evaluating"), tmp_path)
    ModelVersion.objects.filter(pk=old_model.pk).update(created_at=now - timedelta(days=9))
    TrainingRun.objects.filter(dataset=aged).update(queued_at=now - timedelta(days=9))
    old_model.refresh_from_db()
    production[aged.pk] = old_model
    RetrainPolicy.objects.create(dataset=aged, min_new_approved_images=100, max_model_age_days=7)

    started = services.retrain_due_datasets(now=now)

    assert sorted(run.dataset.slug for run in started) == ["aged", "due-new"]
    by_slug = {run.dataset.slug: run for run in started}
    assert by_slug["due-new"].trigger == "schedule" and by_slug["due-new"].epochs == 3
    assert by_slug["due-new"].imgsz == 96 and by_slug["due-new"].base == "yolov8n.yaml"
    assert by_slug["aged"].base == "production" and by_slug["aged"].base_model == old_model
    # running it again starts nothing: both are now active
    assert services.retrain_due_datasets(now=now) == []


def test_new_images_count_from_the_last_runs_version(tmp_path):
    dataset = make_training_dataset(slug="grow", count=8, val=1, test=1)
    policy = RetrainPolicy.objects.create(dataset=dataset, min_new_approved_images=4)
    assert services.retrain_reasons(policy=policy)  # 8 approved, no run yet
    register_fake_model(run_in_state(dataset, status="evaluating"), tmp_path)
    assert services.retrain_reasons(policy=policy) == []
    Image.objects.filter(dataset=dataset).update(status="approved")  # unchanged: same images
    assert services.retrain_reasons(policy=policy) == []


def test_beat_entries_and_routes():
    from django_celery_beat.models import PeriodicTask

    from vectormlops.celery import app

    entries = {t.task: t for t in PeriodicTask.objects.filter(task__startswith="apps.training.tasks.")}
    assert set(entries) == {"apps.training.tasks.retrain_schedule_task", "apps.training.tasks.training_runs_sweep_task"}
    assert entries["apps.training.tasks.training_runs_sweep_task"].interval.every == 1
    assert entries["apps.training.tasks.retrain_schedule_task"].interval.every == 15
    assert all(t.enabled for t in entries.values())
    route = app.amqp.router.route
    assert route({}, "apps.training.tasks.training_run_task")["queue"].name == "training"
    assert route({}, "apps.training.tasks.retrain_schedule_task")["queue"].name == "default"
    assert route({}, "apps.training.tasks.training_runs_sweep_task")["queue"].name == "default"


def test_schedule_task_runs_the_service(production):
    from apps.training.tasks import retrain_schedule_task, training_runs_sweep_task

    dataset = make_training_dataset(slug="sched", count=16)
    RetrainPolicy.objects.create(dataset=dataset, min_new_approved_images=1)
    ids = retrain_schedule_task()
    assert ids == [TrainingRun.objects.get(dataset=dataset).pk]
    assert training_runs_sweep_task() == {
        "requeued": [],
        "failed": [],
        "republished": [],  # the new run is within its grace period
        "folders_removed": [],
        "imports": {"republished": [], "failed": []},
    }
