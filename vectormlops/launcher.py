"""``make run``: prepare everything a fresh machine needs, then run web, worker, trainer and beat under honcho.

With no REDIS_URL an embedded Valkey is started under var/valkey; with no DATABASE_URL SQLite under var/ is
used and, unless VECTORMLOPS_DEMO=0, a synthetic demo dataset is seeded on the first start.
Ctrl-C stops honcho (which stops its processes) and then Valkey.
"""

import os
import secrets
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
    env.setdefault("SECRET_KEY", _secret_key())
    env.setdefault("SECURE_COOKIES", "0")  # plain HTTP on loopback; behind nginx's TLS (production) they are Secure
    try:
        with redis_url_or_embedded(VAR_DIR / "valkey", persist=True) as redis_url:
            env["REDIS_URL"] = redis_url
            _manage("migrate", "--noinput", env=env)
            _manage("bootstrap", env=env)
            if demo_wanted(env):
                _manage("seed_demo", "--if-empty", env=env)
            port = env.setdefault("WEB_PORT", "8000")
            print(f"\nVectorMLOps is starting at http://127.0.0.1:{port}/  (Ctrl-C stops everything)\n", flush=True)
            return subprocess.call(
                [sys.executable, "-m", "honcho", "start", "-f", str(BASE_DIR / "Procfile")], env=env, cwd=BASE_DIR
            )
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
