"""The production example environment (deploy/production.env.example) passes Django's deployment checks, and
with it the server redirects plain HTTP, sends HSTS and marks its cookies Secure."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "production.env.example"

REQUESTS = """
import django; django.setup()
from django.test import Client
client = Client(HTTP_HOST="mlops.example.org")
plain = client.get("/accounts/login/")
print("plain", plain.status_code, plain.headers.get("Location"))
https = client.get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
print("https", https.status_code, https.headers.get("Strict-Transport-Security"), https.cookies["csrftoken"]["secure"])
"""


def example_environment(tmp_path) -> dict:
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    assert values["SECRET_KEY"] == "", "the example must not ship a usable secret key"
    values["SECRET_KEY"] = secrets.token_urlsafe(50)  # the one line an operator must fill in
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "SECRET_KEY")}
    return {**base, **values, "VECTORMLOPS_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "vectormlops.settings"}


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_check_deploy_passes_with_the_production_example(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], example_environment(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_the_transport_settings(tmp_path):
    env = example_environment(tmp_path)
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"):
        env.pop(name)
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr  # HSTS, SSL redirect


def test_production_example_redirects_http_and_sends_hsts_and_secure_cookies(tmp_path):
    result = run(["-c", REQUESTS], example_environment(tmp_path))
    assert result.returncode == 0, result.stderr
    plain, https = result.stdout.strip().splitlines()[-2:]
    assert plain == "plain 301 https://mlops.example.org/accounts/login/"
    assert https == "https 200 max-age=31536000; includeSubDomains; preload True"
