"""``make run``: prepare everything a fresh machine needs, then run web, worker, trainer and beat under honcho.

With no REDIS_URL an embedded Valkey is started under var/valkey; with no DATABASE_URL SQLite under var/ is
used and, unless VECTORMLOPS_DEMO=0, a synthetic demo dataset is seeded on the first start.
What the launcher makes up (the installation's secret, the embedded Valkey's URL) it records in var/run.env, which
settings read, so ``python manage.py ...`` from the checkout uses the same secret, database, Redis and media.
Ctrl-C stops honcho (which stops its processes, killing what has not stopped after 5 s) and then Valkey.
"""

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VECTORMLOPS_VAR_DIR", BASE_DIR / "var"))


def _secret_key() -> str:
    """A stable random key for this installation, kept in var/ with owner-only permissions."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


RUN_ENV_NAME = "run.env"  # settings.py reads VAR_DIR / this name
# honcho kills what is left 5 s after the first of its processes stops, which on a busy machine can be late; what is
# still running this long after Ctrl-C we kill ourselves, so that everything is gone within 15 s.
HONCHO_STOP_WAIT_S = 8


def run_env_write(values: dict) -> Path:
    """Record for manage.py what this launcher made up (owner-only: it holds the secret); replaced atomically."""
    path = VAR_DIR / RUN_ENV_NAME
    lines = ["# Written by `make run` (vectormlops/launcher.py) on every start; settings.py reads it. The real"]
    lines += ["# environment wins over it. REDIS_URL is the embedded Valkey, reachable only while `make run` runs."]
    lines += [f"{name}={value}" for name, value in values.items()]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def demo_wanted(env: dict) -> bool:
    """Seed the demo only on the embedded default database (never one given by DATABASE_URL), unless switched off."""
    return not env.get("DATABASE_URL") and env.get("VECTORMLOPS_DEMO", "1") != "0"


def _manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, check=True, cwd=BASE_DIR)


def main() -> int:
    from vectormlops.embedded_redis import redis_url_or_embedded

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "vectormlops.settings")
    # The Procfile's daphne and celery live next to this interpreter (the venv), whatever the caller's PATH.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    made_up = {}
    if not env.get("SECRET_KEY"):
        made_up["SECRET_KEY"] = env["SECRET_KEY"] = _secret_key()
    env.setdefault("SECURE_COOKIES", "0")  # plain HTTP on loopback; behind nginx's TLS (production) they are Secure
    try:
        with redis_url_or_embedded(VAR_DIR / "valkey", persist=True) as redis_url:
            if not env.get("REDIS_URL"):
                made_up["REDIS_URL"] = redis_url
            env["REDIS_URL"] = redis_url
            run_env_write(made_up)
            _manage("migrate", "--noinput", env=env)
            _manage("bootstrap", env=env)
            if demo_wanted(env):
                _manage("seed_demo", "--if-empty", env=env)
            port = env.setdefault("WEB_PORT", "8000")
            print(f"\nVectorMLOps is starting at http://127.0.0.1:{port}/  (Ctrl-C stops everything)\n", flush=True)
            return _honcho(env)
    except KeyboardInterrupt:
        return 130


def _honcho(env: dict) -> int:
    """Run the Procfile under honcho until it ends. On Ctrl-C honcho (in our process group) gets the SIGINT too and
    stops its processes, each in a session of its own; we wait for it rather than kill it, or they would be orphaned.
    A SIGINT or SIGTERM sent to this process alone is passed on."""
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(BASE_DIR / "Procfile")], env=env, cwd=BASE_DIR
    )

    def pass_on(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # one stop is enough; a second Ctrl-C must not kill honcho
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if honcho.poll() is None:
            honcho.send_signal(signal.SIGINT)
        raise _Stopping

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return honcho.wait()
    except _Stopping:
        # Honcho's processes run in sessions of their own (below a helper process each), so note them all now.
        processes = _descendants(honcho.pid)
        try:
            honcho.wait(timeout=HONCHO_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            honcho.kill()
            honcho.wait()
            _kill_all(processes)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _descendants(root: int) -> list[int]:
    """The pids below ``root``, children first (Linux /proc; empty elsewhere)."""
    parents = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # field 4 of stat, after the command's parentheses
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


def _kill_all(pids: list[int]) -> None:
    """SIGKILL each process and the process group it leads (a worker's pool children go with it)."""
    own_group = os.getpgid(0)
    for pid in pids:
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class _Stopping(Exception):
    """Raised by the signal handler to leave honcho.wait()."""


if __name__ == "__main__":
    sys.exit(main())
