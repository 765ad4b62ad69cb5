"""Settings come from the environment and fail fast, naming the variable, when they are wrong."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = (
    "import django; django.setup(); from django.conf import settings; print(settings.STORAGES['default']['BACKEND'])"
)


LONG_KEY = "k" * 10 + "ey-long-enough-for-the-fifty-character-rule-0123456789"


def run_setup(**env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "AWS_STORAGE_BUCKET_NAME")}
    # A var folder of its own: a checkout's var/run.env (written by `make run`) would supply a SECRET_KEY.
    var_dir = tempfile.mkdtemp(prefix="vmo-settings-")
    env.update({"DJANGO_SETTINGS_MODULE": "vectormlops.settings", "VECTORMLOPS_VAR_DIR": var_dir, **env_overrides})
    return subprocess.run([sys.executable, "-c", SETUP], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_secret_key_is_required_when_debug_is_off():
    result = run_setup(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_short_secret_key_is_refused_when_debug_is_off():
    result = run_setup(DEBUG="0", SECRET_KEY="short-key")
    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 characters" in result.stderr


def test_debug_without_secret_key_starts():
    result = run_setup(DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_malformed_database_url_names_the_variable():
    result = run_setup(SECRET_KEY=LONG_KEY, DATABASE_URL="notascheme//oops")
    assert result.returncode != 0
    assert "DATABASE_URL is malformed" in result.stderr


def test_malformed_redis_url_names_the_variable():
    result = run_setup(SECRET_KEY=LONG_KEY, REDIS_URL="http://127.0.0.1:abc")
    assert result.returncode != 0
    assert "REDIS_URL is malformed" in result.stderr


def test_bucket_name_switches_default_storage_to_s3():
    result = run_setup(SECRET_KEY=LONG_KEY, AWS_STORAGE_BUCKET_NAME="robots")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "storages.backends.s3.S3Storage"


def test_local_disk_storage_without_bucket():
    result = run_setup(SECRET_KEY=LONG_KEY)
    assert result.stdout.strip() == "django.core.files.storage.FileSystemStorage"
