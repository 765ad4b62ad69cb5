"""`make run` on the embedded default: manage.py from the checkout shares its secret, database and Redis (var/run.env),
says clearly when its Valkey is down, and Ctrl-C stops every process within 15 s even mid-training."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_S = 15  # the promise of README's "Ctrl-C stops all of them"


def checkout_env(var_dir: Path, **extra) -> dict:
    """The environment of a person in the checkout: none of the test run's settings, only the var folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "REDIS_URL", "DATABASE_URL", "DEBUG")}
    env.update({"VECTORMLOPS_VAR_DIR": str(var_dir), **extra})
    return env


def manage(var_dir: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env=checkout_env(var_dir),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_settings_take_the_secret_and_redis_from_run_env_and_the_environment_wins(tmp_path):
    key = "from-run-env-" + "k" * 50
    (tmp_path / "run.env").write_text(f"# comment\nSECRET_KEY={key}\nREDIS_URL=redis://127.0.0.1:6399/3\n")
    show = f"from django.conf import settings; print(settings.SECRET_KEY == {key!r}, settings.REDIS_URL)"

    from_file = manage(tmp_path, "shell", "-c", show)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.split()[-2:] == ["True", "redis://127.0.0.1:6399/3"]

    env = checkout_env(tmp_path, REDIS_URL="redis://127.0.0.1:6390/1")
    from_env = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", show], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert from_env.stdout.split()[-1] == "redis://127.0.0.1:6390/1", from_env.stderr


def test_a_command_that_needs_redis_says_make_run_is_not_running(tmp_path):
    # Given the address make run recorded, and no Valkey listening there any more
    key = "k" * 60
    (tmp_path / "run.env").write_text(f"SECRET_KEY={key}\nREDIS_URL=redis://127.0.0.1:{free_port()}/0\n")
    # When a command touches Redis
    result = manage(tmp_path, "shell", "-c", "from django.core.cache import cache; cache.set('k', 1)")
    # Then it says what is wrong and what to do, without a traceback
    assert result.returncode == 1
    assert "is not reachable" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr


def _run_status(var_dir: Path, run_id: int) -> str:
    with sqlite3.connect(var_dir / "vectormlops.sqlite3", timeout=30) as db:
        row = db.execute("SELECT status FROM training_trainingrun WHERE id = ?", (run_id,)).fetchone()
    return row[0] if row else ""


def _wait_for(predicate, timeout: float, what: str, log: Path, launcher: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; launcher output:\n{log.read_text()[-4000:]}")


def test_ctrl_c_on_make_run_stops_every_process_within_15_s_while_training_on_a_busy_machine(tmp_path):
    log = tmp_path / "launcher.log"
    env = checkout_env(tmp_path, WEB_PORT=str(free_port()), VECTORMLOPS_DEMO="1")
    with log.open("w") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "vectormlops.launcher"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job is
        )
    burners = []
    processes = []
    try:
        _wait_for(lambda: "VectorMLOps is starting" in log.read_text(), 300, "the launcher to start", log, launcher)

        # A second terminal: manage.py with no environment starts a training run through make run's Valkey.
        start = manage(
            tmp_path,
            "shell",
            "-c",
            "from django.db import transaction\n"
            "from apps.datasets.models import Dataset\n"
            "from apps.training.services import training_run_start\n"
            "with transaction.atomic():\n"
            "    run = training_run_start(dataset=Dataset.objects.get(slug='demo-synthetic'), epochs=200, imgsz=64,"
            " batch=4)\n"
            "print(run.pk)",
        )
        assert start.returncode == 0, start.stderr
        run_id = int(start.stdout.split()[-1])
        _wait_for(lambda: _run_status(tmp_path, run_id) == "training", 300, "the run to be training", log, launcher)

        processes = [psutil.Process(launcher.pid), *psutil.Process(launcher.pid).children(recursive=True)]
        names = " ".join(p.name() for p in processes)
        assert "celery" in names or len(processes) >= 6, names  # launcher, valkey, honcho, web, workers, beat
        # A busy machine: every core spinning beside the training.
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]

        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        stopped_at = time.monotonic()
        gone, alive = psutil.wait_procs(processes, timeout=STOP_BOUND_S)
        took = time.monotonic() - stopped_at
        assert not alive, f"still running {took:.1f} s after Ctrl-C: {[(p.pid, p.name()) for p in alive]}"
        assert launcher.wait(timeout=5) is not None
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        if launcher.poll() is None:
            processes += psutil.Process(launcher.pid).children(recursive=True)
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()
