"""Small helpers the benchmark scripts share (they run as plain scripts: ``python bench/<name>.py``)."""

import contextlib
import os
import shutil
import socket
import tempfile

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_postgres_database(name: str) -> str:
    """Drop and create database ``name`` on the local PostgreSQL; return its DATABASE_URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgres://postgres@127.0.0.1:5432/{name}"


@contextlib.contextmanager
def django_on_scratch(prefix: str):
    """Django set up in this process on a throw-away SQLite database and media folder (migrated); yields the folder,
    removed afterwards."""
    var = tempfile.mkdtemp(prefix=prefix)
    os.environ.update(
        {
            "VECTORMLOPS_VAR_DIR": var,
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-long-enough-for-the-fifty-character-rule"),
        }
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectormlops.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        yield var
    finally:
        shutil.rmtree(var, ignore_errors=True)
