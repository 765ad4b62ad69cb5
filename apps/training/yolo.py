"""The one module that drives ultralytics for training: materialise, train, export, register. Nothing here touches
the network: bases are configs (.yaml, built from scratch) or local weights, and ultralytics runs offline.

It runs inside the Celery worker that serves the ``training`` queue (a solo or threads pool: the task's process must
not be a daemonic prefork child, and the data loader uses ``workers=0`` so it never forks anyway). Liveness is a
heartbeat thread updating the run row; cancellation is read from the row (per epoch, and by the heartbeat thread so
a long epoch stops between batches)."""

import collections
import gc
import importlib.metadata
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path

import yaml
from django.conf import settings
from django.db import close_old_connections

from apps.datasets.services import version_materialize
from apps.datasets.storage import place_stored_file, sha256_of_file
from apps.training import services
from apps.training.models import ModelArtifact, TrainingRun
from vectormlops.heartbeat import Heartbeat as BaseHeartbeat

log = logging.getLogger(__name__)
Status = TrainingRun.Status
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PACKAGES = ("ultralytics", "torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxslim", "opencv-python")


class RunCancelled(Exception):
    """Raised inside ultralytics' callbacks to abandon a cancelled (or superseded) run quickly."""


def preload() -> None:
    """Import what a run needs (the training worker calls this when it starts)."""
    import onnx  # noqa: F401 - the ONNX exporter's dependencies (pinned in requirements.txt)
    import onnxruntime  # noqa: F401
    import onnxslim  # noqa: F401
    import ultralytics  # noqa: F401

    log.info("training libraries loaded")


# --- environment (reproducibility) ---------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    """``auto`` is the first CUDA device when one is present, else the CPU; anything else goes to ultralytics."""
    if device and device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def code_revision() -> str:
    revision = os.environ.get("GIT_REVISION", "").strip()
    if revision:
        return revision
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import torch

        versions["cuda"] = torch.version.cuda or ""
    except Exception:  # noqa: BLE001 - informative only
        pass
    return versions


def environment_info() -> dict:
    return {
        "worker_host": f"{socket.gethostname()} (pid {os.getpid()})",
        "code_revision": code_revision(),
        "package_versions": package_versions(),
    }


# --- log tail and heartbeat ------------------------------------------------------------------------------------


class LogTail(logging.Handler):
    """Keeps the last lines ultralytics logs from this run's thread (other runs in a threads pool are filtered)."""

    def __init__(self, lines: int = 200):
        super().__init__(level=logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.thread_id = threading.get_ident()
        self._lock_lines = threading.Lock()

    def emit(self, record):
        if record.thread != self.thread_id:
            return
        try:
            message = ANSI.sub("", record.getMessage())
        except Exception:  # noqa: BLE001 - a bad log record must not break training
            return
        with self._lock_lines:
            self.lines.extend(line.rstrip() for line in message.splitlines() if line.strip())

    def note(self, message: str) -> None:
        with self._lock_lines:
            self.lines.append(f"[vectormlops] {message}")

    def text(self) -> str:
        with self._lock_lines:
            return "\n".join(self.lines) + "\n"


class Heartbeat(BaseHeartbeat):
    """Beats the run row every few seconds while this process lives; a killed worker stops beating, and the sweeper
    notices. It also reads the cancel flag so a long epoch can stop between batches."""

    def __init__(self, run_id: int, attempt: int, tail: LogTail, interval_s: float):
        super().__init__(self.beat_run, interval_s=interval_s, name=f"heartbeat-run-{run_id}")
        self.run_id, self.attempt, self.tail = run_id, attempt, tail
        self.cancel_event = threading.Event()

    def beat_run(self) -> None:
        try:
            if services.training_run_heartbeat(run_id=self.run_id, attempt=self.attempt, log_tail=None):
                self.cancel_event.set()
        except Exception:  # noqa: BLE001 - a missed beat is retried; the sweeper allows several
            log.warning("heartbeat of run %s failed", self.run_id, exc_info=True)
            close_old_connections()
        # A second path through Redis: failing database writes alone never make a live run look lost (a failure
        # here is logged by the base class and tried again on the next beat).
        services.training_run_pulse(run_id=self.run_id, attempt=self.attempt)


# --- the run --------------------------------------------------------------------------------------------------


def run_dir_for(run: TrainingRun) -> Path:
    return services.run_folder(run.pk)


def _metrics(raw: dict) -> dict:
    """ultralytics' metric keys -> ours."""

    def pick(key):
        value = raw.get(key)
        return None if value is None else round(float(value), 6)

    return {
        "precision": pick("metrics/precision(B)"),
        "recall": pick("metrics/recall(B)"),
        "map50": pick("metrics/mAP50(B)"),
        "map50_95": pick("metrics/mAP50-95(B)"),
    }


def _losses(trainer) -> dict:
    """Training losses as box/cls/dfl, and the validation losses the epoch's validation computed as val_box/…"""
    items = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss is not None else {}
    losses = {key.split("/", 1)[1].removesuffix("_loss"): round(float(value), 6) for key, value in items.items()}
    for key, value in (trainer.metrics or {}).items():
        if key.startswith("val/") and key.endswith("_loss"):
            losses["val_" + key[4:].removesuffix("_loss")] = round(float(value), 6)
    return losses


def _base_weights(run: TrainingRun, folder: Path) -> str:
    """What YOLO() is built from: a config, a local weights file, or the production model's .pt (copied out of
    storage, so S3 works the same as local disk)."""
    if run.registered_base is not None:
        from apps.training.services.bases import base_weights_fetch

        return base_weights_fetch(run.registered_base, folder)
    if run.base != TrainingRun.PRODUCTION_BASE:
        return run.base
    if run.base_model is None:
        raise RuntimeError("base is 'production' but the run names no base model")
    artifact = run.base_model.artifacts.get(format=ModelArtifact.Format.PT)
    target = folder / "base.pt"
    place_stored_file(artifact.storage_path, target, link=False)
    sha256, _ = sha256_of_file(target)
    if sha256 != artifact.sha256:
        raise RuntimeError(f"base model weights fail their checksum ({artifact.storage_path})")
    return str(target)


def _has_split(data_yaml: Path, split: str) -> bool:
    config = yaml.safe_load(data_yaml.read_text())
    if not config.get(split):
        return False
    folder = Path(config.get("path", data_yaml.parent)) / config[split]
    return folder.is_dir() and any(folder.iterdir())


def execute_run(*, run_id: int, task_id: str = "") -> str:
    """Claim a queued run and carry it to succeeded, failed or cancelled. Returns the final status (or 'skipped'
    when there was nothing to do). Never raises for a training failure: the run row records it."""
    run = services.training_run_claim(run_id=run_id, task_id=task_id, environment=environment_info())
    if run is None:
        return "skipped"
    attempt = run.attempts
    tail = LogTail()
    ultralytics_logger = logging.getLogger("ultralytics")
    ultralytics_logger.addHandler(tail)
    heartbeat = Heartbeat(run.pk, attempt, tail, settings.TRAINING_HEARTBEAT_S)
    heartbeat.start()
    folder = run_dir_for(run)
    started = time.monotonic()
    try:
        status = _train(run, attempt, folder, tail, heartbeat, started)
    except RunCancelled:
        tail.note("cancelled")
        services.training_run_finish(run=run, status=Status.CANCELLED, attempt=attempt, log_tail=tail.text())
        status = Status.CANCELLED
    except Exception as exc:  # noqa: BLE001 - any failure ends the run as failed, with the reason shown
        log.exception("training run %s failed", run.pk)
        tail.note("".join(traceback.format_exception(exc)[-3:]).strip())
        message = f"{type(exc).__name__}: {exc}"
        cancelled = (
            heartbeat.cancel_event.is_set() or TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()
        )
        services.training_run_finish(
            run=run,
            status=Status.CANCELLED if cancelled else Status.FAILED,
            attempt=attempt,
            error="" if cancelled else message,
            log_tail=tail.text(),
        )
        status = Status.CANCELLED if cancelled else Status.FAILED
    finally:
        heartbeat.stop_event.set()
        heartbeat.join(timeout=10)
        ultralytics_logger.removeHandler(tail)
        _release_memory()
    if TrainingRun.objects.filter(pk=run.pk, attempts=attempt).exclude(status__in=TrainingRun.ACTIVE_STATUSES).exists():
        # Ended with this attempt (not re-queued for another): the registered model's files live in storage now;
        # the folder only held links, labels, copies and a failed attempt's leftovers.
        shutil.rmtree(folder, ignore_errors=True)
    return status


def _release_memory() -> None:
    """A training worker lives for many runs: hand the model's memory back between them."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


def _train(run: TrainingRun, attempt: int, folder: Path, tail: LogTail, heartbeat: Heartbeat, started: float) -> str:
    """Prepare, fit, test, export and register: the run's way to succeeded (RunCancelled or an error otherwise)."""
    run, data_yaml, base, device = _prepare(run, folder, tail)

    from ultralytics import YOLO

    model = YOLO(base, task="detect")
    state = _watch_epochs(model, run, attempt, tail, heartbeat)
    if heartbeat.cancel_event.is_set() or not services.training_run_advance(
        run=run, status=Status.TRAINING, attempt=attempt, log_tail=tail.text()
    ):
        raise RunCancelled
    train_start = time.monotonic()
    prepare_seconds = train_start - started
    model.train(
        data=str(data_yaml),
        epochs=run.epochs,
        imgsz=run.imgsz,
        batch=run.batch,
        patience=run.patience,
        seed=run.seed,
        device=device,
        workers=0,  # no data-loader processes: safe in any worker pool, and no fork of a Django process
        plots=False,  # plots fetch a font from the internet
        project=str(folder / "ultralytics"),
        name="train",
        exist_ok=True,
        verbose=True,
    )
    train_seconds = time.monotonic() - train_start
    state.check_cancel()
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
    if not best.exists():
        raise RuntimeError("training produced no weights")
    if not services.training_run_advance(run=run, status=Status.EVALUATING, attempt=attempt, log_tail=tail.text()):
        raise RunCancelled

    val = state.final_val or _metrics(trainer.metrics)
    final = {
        "val": val,
        "epochs_completed": int(trainer.epoch) + 1,
        "prepare_seconds": round(prepare_seconds, 2),
        "train_seconds": round(train_seconds, 2),
    }
    best_epoch = getattr(trainer.stopper, "best_epoch", None)
    if best_epoch is not None:
        final["best_epoch"] = int(best_epoch) + 1
    onnx_path = _test_and_export(run, best, data_yaml, device, folder, final, state.check_cancel)
    final["total_seconds"] = round(time.monotonic() - started, 2)
    tail.note(f"exported {onnx_path.name}; registering the model")
    services.model_version_register(
        run=run,
        attempt=attempt,
        weights_path=best,
        onnx_path=onnx_path,
        metrics={**val, **({"test": final["test"]} if "test" in final else {})},
        final_metrics=final,
        log_tail=tail.text(),
    )
    return Status.SUCCEEDED


def _prepare(run: TrainingRun, folder: Path, tail: LogTail) -> tuple[TrainingRun, Path, str, str]:
    """A clean run folder with the frozen version laid out in it: (run, data.yaml, base weights, device)."""
    if folder.exists():
        shutil.rmtree(folder)  # what an earlier, killed attempt left behind
    folder.mkdir(parents=True)
    run = TrainingRun.objects.select_related("dataset_version", "base_model", "dataset").get(pk=run.pk)
    data_yaml = version_materialize(version=run.dataset_version, dest_dir=folder / "data", link=True)
    base = _base_weights(run, folder)
    device = resolve_device(run.device)
    tail.note(f"version {run.dataset_version.number} materialised; base {run.base}; device {device}")
    return run, data_yaml, base, device


class EpochWatch:
    """What the ultralytics callbacks share: whether the epoch loop is over, the final validation's metrics,
    and the cancel check."""

    def __init__(self, heartbeat: Heartbeat):
        self.heartbeat = heartbeat
        self.loop_done = False
        self.final_val = None

    def check_cancel(self, _component=None) -> None:
        if self.heartbeat.cancel_event.is_set():
            raise RunCancelled


def _watch_epochs(model, run: TrainingRun, attempt: int, tail: LogTail, heartbeat: Heartbeat) -> EpochWatch:
    """Record every epoch's metrics, and stop between batches (or before validation) once a cancel is asked for."""
    state = EpochWatch(heartbeat)

    def on_train_batch_end(trainer):
        if heartbeat.cancel_event.is_set():
            trainer.stop = True  # ultralytics leaves the epoch between batches; validation start then aborts

    def on_fit_epoch_end(trainer):
        if state.loop_done:
            # The trainer's final validation of best.pt reuses this callback after the last epoch.
            state.final_val = _metrics(trainer.metrics)
            return
        state.loop_done = bool(trainer.stop)
        stop = services.epoch_metric_record(
            run=run,
            attempt=attempt,
            epoch=trainer.epoch + 1,
            losses=_losses(trainer),
            metrics=_metrics(trainer.metrics),
            seconds=round(float(getattr(trainer, "epoch_time", 0) or 0), 3),
            log_tail=tail.text(),
        )
        if stop:
            heartbeat.cancel_event.set()
            trainer.stop = True
            state.loop_done = True

    model.add_callback("on_train_batch_end", on_train_batch_end)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    model.add_callback("on_val_start", state.check_cancel)
    model.add_callback("on_pretrain_routine_start", state.check_cancel)
    return state


def _test_and_export(
    run: TrainingRun, best: Path, data_yaml: Path, device: str, folder: Path, final: dict, check_cancel
):
    """Score the best weights on the frozen test split (into ``final``) and export them to ONNX; returns its path."""
    from ultralytics import YOLO

    test_start = time.monotonic()
    trained = YOLO(str(best), task="detect")
    if _has_split(data_yaml, "test"):
        # The frozen test split, never seen in training: the figure to compare models by.
        results = trained.val(
            data=str(data_yaml), split="test", imgsz=run.imgsz, batch=run.batch, device=device, plots=False,
            workers=0, project=str(folder / "ultralytics"), name="test", exist_ok=True, verbose=False,
        )  # fmt: skip
        final["test"] = _metrics(results.results_dict)
        final["test_seconds"] = round(time.monotonic() - test_start, 2)
    check_cancel()
    export_start = time.monotonic()
    onnx_path = Path(trained.export(format="onnx", imgsz=run.imgsz, simplify=True, dynamic=False, device="cpu"))
    final["export_seconds"] = round(time.monotonic() - export_start, 2)
    check_cancel()
    return onnx_path
