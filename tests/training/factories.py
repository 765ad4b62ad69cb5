"""Small builders for training rows (runs in a given state, registered models with real stored files)."""

from pathlib import Path

from apps.training import services
from apps.training.models import ModelVersion, TrainingRun


def run_in_state(dataset, *, status="training", attempts=1, **fields) -> TrainingRun:
    """A run created by the service, then moved to ``status`` as a worker would have left it."""
    run = services.training_run_start(dataset=dataset, epochs=1, imgsz=64, batch=4, trigger="api")
    TrainingRun.objects.filter(pk=run.pk).update(status=status, attempts=attempts, **fields)
    run.refresh_from_db()
    return run


def register_fake_model(run: TrainingRun, tmp_path: Path, *, payload: bytes = b"weights") -> ModelVersion:
    """Register a model for ``run`` through the real service, with small stand-in files."""
    TrainingRun.objects.filter(pk=run.pk).update(status="evaluating")
    run.refresh_from_db()
    pt, onnx = tmp_path / f"best-{run.pk}.pt", tmp_path / f"best-{run.pk}.onnx"
    pt.write_bytes(payload + b".pt")
    onnx.write_bytes(payload + b".onnx")
    return services.model_version_register(
        run=run,
        attempt=run.attempts,
        weights_path=pt,
        onnx_path=onnx,
        metrics={"map50": 0.5},
        final_metrics={"val": {"map50": 0.5}},
    )
