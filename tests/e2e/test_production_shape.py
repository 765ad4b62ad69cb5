"""The production shape of docker-compose.yml, started without Docker from Debian packages and the venv:
nginx in front (TLS with a self-signed certificate, HTTP redirected; its server config is deploy/nginx.conf itself),
gunicorn for HTTP, daphne for /ws/, a `default` and a `training` Celery worker, beat, the test database (PostgreSQL,
or the SQLite file when the suite runs on SQLite), a private Valkey and moto's S3 server. Then the robot loop goes
through nginx: enrol, poll, download with Range, promote, roll back, and a WebSocket event arrives through nginx.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest
from django.conf import settings
from django.test import Client

from tests.builders import dataset_row, make_model
from tests.conftest import free_port, require, test_database_url
from vectormlops.embedded_redis import embedded_valkey
from vectormlops.services import api_token_create

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

BIN = Path(sys.executable).parent
NGINX_TEMPLATE = Path(settings.BASE_DIR) / "deploy" / "nginx.conf"
ENROLLMENT_KEY = "production-shape-enrolment-key-0123456789"
BUCKET = "vectormlops-shape"


def render_nginx_template(values: dict) -> str:
    """What the nginx image does with /etc/nginx/templates: ${NAME} from the environment; nginx's $vars stay."""
    text = NGINX_TEMPLATE.read_text()
    missing = set(re.findall(r"\$\{([A-Z_]+)\}", text)) - set(values)
    assert not missing, f"deploy/nginx.conf needs {missing}"
    return re.sub(r"\$\{([A-Z_]+)\}", lambda match: str(values[match.group(1)]), text)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class Processes:
    """Children with their output in files; all stopped (TERM, then KILL) at the end."""

    def __init__(self, folder: Path, env: dict):
        self.folder, self.env, self.children = folder, env, {}

    def start(self, name: str, args: list) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.children[name] = (
            subprocess.Popen([str(a) for a in args], cwd=settings.BASE_DIR, env=self.env, stdout=log, stderr=log),
            log,
        )

    def check_alive(self) -> None:
        for name, (process, _) in self.children.items():
            assert process.poll() is None, f"{name} exited ({process.returncode}):\n{self.log(name)[-3000:]}"

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process, _ in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5  # one grace period for all, then KILL
        for process, log in self.children.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            log.close()


def wait_for(what: str, check, processes: Processes, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def websocket_connect(port: int, path: str, cafile: Path, headers: dict) -> ssl.SSLSocket:
    """A bare RFC 6455 client (no WebSocket package in the venv): the handshake, then frames from the server."""
    context = ssl.create_default_context(cafile=str(cafile))
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15), server_hostname="localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: localhost:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed during the handshake: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def websocket_receive_json(sock: ssl.SSLSocket) -> dict:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the WebSocket closed"
            data += chunk
        return data

    first, second = exactly(2)
    assert first & 0x0F == 0x1, f"expected a text frame, got opcode {first & 0x0F}"
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return json.loads(exactly(length))


@pytest.fixture
def stack(tmp_path, settings, make_user):
    require(shutil.which("nginx") is not None, "nginx (Debian package)")
    require(shutil.which("openssl") is not None, "openssl (Debian package)")
    cert, key = self_signed_certificate(tmp_path)
    ports = {name: free_port() for name in ("http", "https", "web", "ws", "s3")}
    with embedded_valkey(tmp_path / "valkey") as (redis_url, _server):
        env = {
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": settings.SECRET_KEY,  # the session this process signs in must be valid there
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": redis_url,
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "CSRF_TRUSTED_ORIGINS": f"https://localhost:{ports['https']}",
            "SECURE_SSL_REDIRECT": "1",  # passes only if nginx's X-Forwarded-Proto reaches Django
            "SECURE_HSTS_SECONDS": "60",
            "ROBOT_ENROLLMENT_KEY": ENROLLMENT_KEY,
            "NUM_PROXIES": "1",  # nginx in front: per-address limits count the client address nginx saw
            "VECTORMLOPS_VAR_DIR": str(tmp_path / "var"),
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_ACCESS_KEY_ID": "shape-test",
            "AWS_SECRET_ACCESS_KEY": "shape-test-secret",
        }
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp_path / "nginx" / name).mkdir(parents=True)
        site = render_nginx_template(
            {
                "WEB_UPSTREAM": f"127.0.0.1:{ports['web']}",
                "WS_UPSTREAM": f"127.0.0.1:{ports['ws']}",
                "HTTP_PORT": f"127.0.0.1:{ports['http']}",
                "HTTPS_PORT": f"127.0.0.1:{ports['https']}",
                "SERVER_NAME": "localhost",
                "PUBLIC_ORIGIN": f"https://localhost:{ports['https']}",
                "TLS_CERTIFICATE": cert,
                "TLS_CERTIFICATE_KEY": key,
            }
        )
        (tmp_path / "nginx" / "site.conf").write_text(site)
        # Only the outer frame is the test's own: one foreground process, its files in tmp_path.
        (tmp_path / "nginx" / "nginx.conf").write_text(
            "daemon off;\nmaster_process off;\npid nginx.pid;\nerror_log error.log info;\nevents {}\nhttp {\n"
            "  access_log access.log;\n"
            + "".join(f"  {name}_temp_path {name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + "  include site.conf;\n}\n"
        )
        processes = Processes(tmp_path, env)
        processes.start("s3", [BIN / "moto_server", "-H", "127.0.0.1", "-p", ports["s3"]])
        processes.start("web", [BIN / "gunicorn", "vectormlops.wsgi:application", "--bind",
                                f"127.0.0.1:{ports['web']}", "--workers", "2"])  # fmt: skip
        processes.start("ws", [BIN / "daphne", "-b", "127.0.0.1", "-p", ports["ws"], "vectormlops.asgi:application"])
        celery = [BIN / "celery", "-A", "vectormlops"]
        processes.start("worker", [*celery, "worker", "-Q", "default", "-c", "1", "-n", "default@shape"])
        processes.start("trainer", [*celery, "worker", "-Q", "training", "--pool", "solo", "-n", "training@shape"])
        processes.start("beat", [*celery, "beat", "--pidfile=", "--loglevel", "INFO", "--scheduler",
                                 "django_celery_beat.schedulers:DatabaseScheduler"])  # fmt: skip
        processes.start("nginx", ["nginx", "-p", tmp_path / "nginx", "-c", "nginx.conf", "-e", "error.log"])
        try:
            wait_for("moto's S3", lambda: httpx.get(f"http://127.0.0.1:{ports['s3']}/").status_code, processes)
            s3 = boto3.client(
                "s3",
                endpoint_url=env["AWS_S3_ENDPOINT_URL"],
                region_name="us-east-1",
                aws_access_key_id="shape-test",
                aws_secret_access_key="shape-test-secret",
            )
            s3.create_bucket(Bucket=BUCKET)
            # This process writes the model artifacts into the same bucket the servers read.
            settings.STORAGES = {
                **settings.STORAGES,
                "default": {
                    "BACKEND": "storages.backends.s3.S3Storage",
                    "OPTIONS": {
                        "bucket_name": BUCKET,
                        "endpoint_url": env["AWS_S3_ENDPOINT_URL"],
                        "region_name": "us-east-1",
                        "access_key": "shape-test",
                        "secret_key": "shape-test-secret",
                        "default_acl": None,
                        "file_overwrite": False,
                    },
                },
            }
            yield {"ports": ports, "cert": cert, "processes": processes, "s3": s3}
        finally:
            processes.stop()


def test_robot_loop_through_nginx_tls_against_the_production_processes(stack, make_user):
    ports, cert, processes = stack["ports"], stack["cert"], stack["processes"]
    origin = f"https://localhost:{ports['https']}"
    https = httpx.Client(base_url=origin, verify=str(cert), timeout=30)

    health = wait_for("gunicorn behind nginx", lambda: https.get("/healthz"), processes)
    assert health.status_code == 200, health.text
    assert health.json()["checks"] == {"database": "ok", "redis": "ok"}
    assert health.headers["strict-transport-security"] == "max-age=60"
    # nginx redirects plain HTTP; Django behind it sees HTTPS (SECURE_SSL_REDIRECT is on and does not loop).
    plain = httpx.get(f"http://127.0.0.1:{ports['http']}/healthz", headers={"Host": "localhost"}, timeout=10)
    assert plain.status_code == 301 and plain.headers["location"] == f"{origin}/healthz"

    admin = make_user("shape-admin", "admin")
    engineer = make_user("shape-engineer", "ml_engineer")
    admin_key = api_token_create(user=admin, expires_in=None)[1]
    engineer_key = api_token_create(user=engineer, expires_in=None)[1]

    dataset = dataset_row("vector")
    first = make_model(dataset, 1, onnx=bytes(range(256)) * 40)
    second = make_model(dataset, 2)
    assert stack["s3"].list_objects_v2(Bucket=BUCKET)["KeyCount"] == 4  # the artifacts live in the S3 store
    people = {"Authorization": f"Token {engineer_key}"}
    assert https.post(f"/api/v1/models/{first.pk}/promote", json={"channel": "production", "reason": "first"},
                      headers=people).status_code in (200, 201)  # fmt: skip

    # A person follows the dataset's deployments over a WebSocket through nginx (wss://, session cookie).
    browser = Client()
    browser.force_login(engineer)
    sock = wait_for(
        "daphne behind nginx",
        lambda: websocket_connect(
            ports["https"],
            "/ws/events/deployments.vector/",
            cert,
            {"Origin": origin, "Cookie": f"sessionid={browser.cookies['sessionid'].value}"},
        ),
        processes,
    )

    # The robot: enrol, poll, download with Range.
    enrolled = https.post(
        "/api/v1/robots/enroll", json={"enrollment_key": ENROLLMENT_KEY, "serial": "00e2e5a1", "name": "Shape"}
    )
    assert enrolled.status_code == 201, enrolled.text
    robot = {"Authorization": f"Bearer {enrolled.json()['token']}"}

    def poll():
        answer = https.get("/api/v1/robot/model", params={"dataset": "vector"}, headers=robot)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert poll()["model_id"] == first.pk
    onnx = poll()["artifacts"]["onnx"]
    whole = https.get(onnx["url"], headers=robot, follow_redirects=True)
    assert whole.status_code == 200 and len(whole.content) == onnx["size"] == 10240
    part = https.get(onnx["url"], headers={**robot, "Range": "bytes=1000-1999"}, follow_redirects=True)
    assert part.status_code == 206 and part.content == whole.content[1000:2000]

    # Promote the second model: the event reaches the WebSocket through nginx, the robot's poll follows.
    promoted = https.post(f"/api/v1/models/{second.pk}/promote", json={"channel": "production", "reason": "v2"},
                          headers=people)  # fmt: skip
    assert promoted.status_code in (200, 201), promoted.text
    event = websocket_receive_json(sock)
    assert event["topic"] == "deployments.vector" and event["event"] == "promote", event
    wait_for("the robot to see model 2", lambda: poll()["model_id"] == second.pk, processes, timeout=15)

    # Roll back: the robot returns to the first model.
    rolled = https.post("/api/v1/datasets/vector/rollback", json={"channel": "production", "reason": "bad"},
                        headers=people)  # fmt: skip
    assert rolled.status_code in (200, 201), rolled.text
    assert websocket_receive_json(sock)["event"] == "rollback"
    wait_for("the robot to see model 1 again", lambda: poll()["model_id"] == first.pk, processes, timeout=15)
    sock.close()

    # Both Celery workers (started with the rest, given the loop's time to boot) answer the staff health ping.
    workers = wait_for(
        "both Celery workers answering the staff health ping",
        lambda: (answer := https.get("/healthz", headers={"Authorization": f"Token {admin_key}"})).json()["checks"]
        .get("celery") == "ok (2 workers)" and answer,
        processes,
        timeout=90,
    )  # fmt: skip
    assert workers.status_code == 200
    processes.check_alive()
    assert "beat: Starting..." in processes.log("beat")
