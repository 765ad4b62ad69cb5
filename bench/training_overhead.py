"""Training overhead: the same data, epochs and imgsz trained once through a TrainingRun (queued -> model
registered, by a real `celery worker -Q training --pool solo`) and once with plain `yolo train` in a subprocess.
Prints both wall times and their ratio (target < 1.10 at 5 epochs).

    python bench/training_overhead.py                          # 60 demo scenes (seed_demo), 5 epochs, imgsz 256
    python bench/training_overhead.py --epochs 40 --skip-plain # the demo figure: test mAP50 of a longer run

Everything runs in a temporary folder with a fresh SQLite database (and an embedded Valkey unless REDIS_URL is set).
The TrainingRun time includes what a real run does beyond `yolo train`: freezing the version, materialising it
(links), the test-split evaluation, the ONNX export, storing both artifacts with their sha256, and registration.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _yolo_cli() -> str:
    candidate = Path(sys.executable).with_name("yolo")
    return str(candidate) if candidate.exists() else "yolo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=60, help="demo images (seed_demo: 320x180 generated scenes)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="alternating repetitions of each path (median taken)")
    parser.add_argument("--skip-plain", action="store_true", help="only the TrainingRun (the demo figure)")
    args = parser.parse_args()

    from vectormlops.embedded_redis import redis_url_or_embedded

    with tempfile.TemporaryDirectory(prefix="vm-bench-train-") as var, redis_url_or_embedded() as redis_url:
        os.environ.update(
            VECTORMLOPS_VAR_DIR=var,
            REDIS_URL=redis_url,
            SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-secret-long-enough-for-the-fifty-character-rule"),
            DJANGO_SETTINGS_MODULE="vectormlops.settings",
            LOG_LEVEL="WARNING",
        )
        os.environ.pop("DATABASE_URL", None)  # a fresh SQLite file in the temporary folder
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("seed_demo", count=args.count, verbosity=0)
        worker_log = open(Path(var) / "worker.log", "wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "vectormlops", "worker", "-Q", "training", "--pool", "solo",
             "-n", "bench-trainer@%h", "--without-gossip", "--without-mingle", "-l", "WARNING"],
            cwd=ROOT, env=os.environ.copy(), stdout=worker_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_ready(f"bench-trainer@{socket.gethostname()}", worker)
            run_bench(args, Path(var))
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
            worker_log.close()


def wait_until_ready(name: str, worker: subprocess.Popen, timeout_s: float = 180) -> None:
    """A training worker is a long-running service: time runs against a started one (it has loaded ultralytics)."""
    from vectormlops.celery import app

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit("the training worker exited")
        if app.control.ping(destination=[name], timeout=1.0):
            return
    raise SystemExit("the training worker did not start")


def run_bench(args, var: Path) -> None:
    from apps.datasets.models import Dataset
    from apps.datasets.services import version_freeze, version_materialize
    from apps.training.models import TrainingRun
    from apps.training.services import training_run_start

    dataset = Dataset.objects.get(slug="demo-synthetic")
    version = version_freeze(dataset=dataset, note="bench")
    print(f"data: {version.image_count} images {version.counts['images']} (320x180 generated scenes)")
    print(f"settings: yolov8n.yaml from scratch, epochs {args.epochs}, imgsz {args.imgsz}, batch {args.batch}, CPU")
    plain_data = version_materialize(version=version, dest_dir=var / "plain-data", link=True)

    def through_training_run(i: int) -> float:
        start = time.perf_counter()
        run = training_run_start(
            dataset=dataset, version=version, base="yolov8n.yaml", epochs=args.epochs, imgsz=args.imgsz,
            batch=args.batch, patience=args.epochs + 1, seed=0, device="cpu", trigger=TrainingRun.Trigger.API,
        )  # fmt: skip
        while True:
            run.refresh_from_db()
            if run.status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        beyond.append(elapsed - (run.final_metrics or {}).get("train_seconds", elapsed))
        if run.status != "succeeded":
            raise SystemExit(f"run {run.pk} {run.status}: {run.error}\n{run.log_tail[-3000:]}")
        final = run.final_metrics
        print(
            f"  TrainingRun #{i}: {elapsed:.1f} s (prepare {final.get('prepare_seconds')} s, train "
            f"{final.get('train_seconds')} s, test split {final.get('test_seconds')} s, export "
            f"{final.get('export_seconds')} s), val mAP50 {final['val']['map50']:.3f}, "
            f"test mAP50 {final.get('test', {}).get('map50', float('nan')):.3f} "
            f"mAP50-95 {final.get('test', {}).get('map50_95', float('nan')):.3f}"
        )
        return elapsed

    def through_plain_yolo(i: int) -> float:
        command = [
            _yolo_cli(), "train", "model=yolov8n.yaml", f"data={plain_data}", f"epochs={args.epochs}",
            f"imgsz={args.imgsz}", f"batch={args.batch}", f"patience={args.epochs + 1}", "seed=0", "device=cpu",
            "plots=False", f"project={var / 'plain-runs'}", f"name=r{i}", "exist_ok=True",
        ]  # fmt: skip
        start = time.perf_counter()
        result = subprocess.run(command, cwd=var, env=os.environ.copy(), capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode:
            raise SystemExit(f"yolo train failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        print(f"  yolo train #{i}: {elapsed:.1f} s")
        return elapsed

    ours, plain, beyond = [], [], []
    for i in range(1, args.repeat + 1):
        if not args.skip_plain:
            plain.append(through_plain_yolo(i))
        ours.append(through_training_run(i))
    ours_s = statistics.median(ours)
    print(f"TrainingRun (queue -> model registered): median {ours_s:.1f} s over {len(ours)}")
    if plain:
        plain_s = statistics.median(plain)
        print(f"plain yolo train:                         median {plain_s:.1f} s over {len(plain)}")
        print(f"ratio: {ours_s / plain_s:.3f} (target < 1.10)")
        pairs = ", ".join(f"{o / p:.3f}" for o, p in zip(ours, plain, strict=True))
        print(f"ratio per alternating pair: {pairs}")
    print(f"TrainingRun time beyond ultralytics' train(): median {statistics.median(beyond):.1f} s")


if __name__ == "__main__":
    main()
