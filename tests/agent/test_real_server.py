"""The agent against the real robot API (Django's live server), with faults injected by a proxy in between."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent.api import ApiClient, CorruptDownload, ModelAnswer
from agent.loops import EXIT_REVOKED, Agent, RunOptions
from agent.modelsync import ModelSlot
from apps.datasets.models import Image
from apps.deployments import services
from apps.deployments.models import Robot, TelemetryRecord
from tests.agent.fakes import constant_detector
from tests.agent.helpers import FakeLink, frame
from tests.builders import dataset_row, make_model

pytestmark = pytest.mark.django_db(transaction=True)


class FaultyProxy:
    """An HTTP proxy to the live server that can cut or corrupt the next artifact body in transit."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.cut_after: int | None = None  # close the connection after N body bytes (once)
        self.flip_at: int | None = None  # flip the body byte at this offset (every artifact response)
        self.seen: list[tuple[str, str, int]] = []  # (path, Range header, status)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                with httpx.Client(base_url=proxy.upstream, timeout=30) as client:
                    with client.stream(self.command, self.path, headers=headers, content=body) as response:
                        data = response.read()
                artifact = "/artifacts/" in self.path and response.status_code in (200, 206)
                proxy.seen.append((self.path, self.headers.get("Range", ""), response.status_code))
                if artifact and proxy.flip_at is not None and len(data) > proxy.flip_at:
                    data = data[: proxy.flip_at] + bytes([data[proxy.flip_at] ^ 0x01]) + data[proxy.flip_at + 1 :]
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if artifact and proxy.cut_after is not None:
                    self.wfile.write(data[: proxy.cut_after])
                    proxy.cut_after = None
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _forward  # noqa: N815 - BaseHTTPRequestHandler's names

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(live_server):
    proxy = FaultyProxy(live_server.url)
    yield proxy
    proxy.close()


@pytest.fixture
def deployed():
    """A dataset with two real (tiny, constant-output) ONNX models, the first in production, and a robot."""
    dataset = dataset_row()
    first = make_model(dataset, 1, onnx=constant_detector([(32, 32, 16, 16, 0.9)]))
    second = make_model(dataset, 2, onnx=constant_detector([(20, 20, 8, 8, 0.8)], n=16))
    services.model_promote(model=first, channel="production", reason="first")
    robot, token = services.robot_register(serial="00e2aa01", name="Vector-AA01")
    return {"dataset": dataset, "first": first, "second": second, "robot": robot, "token": token}


def make(proxy, deployed, tmp_path, link=None) -> Agent:
    client = ApiClient(proxy.url, deployed["token"], timeout=30)
    options = RunOptions(dataset="vector", frame_interval_s=0.01, telemetry_interval_s=0.1)
    return Agent(client, tmp_path / "data", options, link=link)


def test_download_cut_in_transit_resumes_with_range_against_the_real_server(proxy, deployed, tmp_path):
    proxy.cut_after = 150
    agent = make(proxy, deployed, tmp_path)
    assert agent.sync_model() is True
    assert agent.model.model_id == deployed["first"].pk
    artifact_requests = [s for s in proxy.seen if "/artifacts/" in s[0]]
    assert artifact_requests[0][1:] == ("", 200)
    assert artifact_requests[1][1:] == ("bytes=150-", 206)  # the real server honoured the resume


def test_a_byte_flipped_in_transit_is_never_swapped_in_against_the_real_server(proxy, deployed, tmp_path):
    agent = make(proxy, deployed, tmp_path)
    agent.sync_model()
    services.model_promote(model=deployed["second"], channel="production", reason="second")
    proxy.flip_at = 100
    with pytest.raises(CorruptDownload):
        agent.sync_model()
    assert agent.model.model_id == deployed["first"].pk
    assert agent.process_frame(frame())[0].confidence == pytest.approx(0.9)  # still the first model
    proxy.flip_at = None
    assert agent.sync_model() is True
    assert agent.model.model_id == deployed["second"].pk


def test_telemetry_and_the_running_model_reach_the_real_server(proxy, deployed, tmp_path):
    agent = make(proxy, deployed, tmp_path)
    agent.sync_model()
    for n in range(3):
        agent.process_frame(frame(n))
    agent.flush()
    assert len(agent.spool) == 0
    records = TelemetryRecord.objects.filter(robot=deployed["robot"])
    assert records.count() == 3
    assert {r.model_id for r in records} == {deployed["first"].pk}
    assert records.first().detection_count == 1
    robot = Robot.objects.get(pk=deployed["robot"].pk)
    assert robot.running_model_id == deployed["first"].pk
    assert robot.running_sha256 == deployed["first"].artifacts.get(format="onnx").sha256


def test_a_revoked_token_stops_the_agent_against_the_real_server(proxy, deployed, tmp_path):
    services.robot_revoke(robot=deployed["robot"])
    agent = make(proxy, deployed, tmp_path, link=FakeLink())
    assert agent.run() == EXIT_REVOKED
    polls = [s for s in proxy.seen if s[0].startswith("/api/v1/robot/model")]
    assert [status for _, _, status in polls] == [401]


def test_shadow_telemetry_and_disagreement_frames_are_accepted_by_the_real_server(proxy, deployed, tmp_path):
    client = ApiClient(proxy.url, deployed["token"], timeout=30)
    options = RunOptions(dataset="vector", disagreement_window_s=0, shadow_budget_ms=60_000)
    agent = Agent(client, tmp_path / "data", options)
    agent.sync_model()
    # The shadow slot filled as a poll answer's shadow part would (the file already verified: no download).
    second, data = deployed["second"], constant_detector([(20, 20, 8, 8, 0.8)], n=16)
    sha256 = hashlib.sha256(data).hexdigest()
    slot = ModelSlot(agent.models.shadow_root, report=agent.reporter.event, role="shadow")
    slot.store.path_of(sha256).write_bytes(data)
    answer = ModelAnswer(model_id=second.pk, sha256=sha256, url="/unused", size=len(data), classes=["vector"], imgsz=64)
    assert slot.apply(answer, client, "vector") is True
    agent.models.shadow = slot
    for n in range(3):
        agent.process_frame(frame(n))
    agent.flush()
    assert len(agent.spool) == 0  # nothing refused
    assert TelemetryRecord.objects.filter(robot=deployed["robot"], model_id=deployed["first"].pk).count() == 3
    image = Image.objects.get(dataset=deployed["dataset"], source="shadow_disagreement")  # same frame bytes: one image
    assert image.robot_serial == "00e2aa01"
    assert image.meta["model_id"] == deployed["first"].pk
    assert image.meta["shadow"]["model_id"] == second.pk
    assert image.meta["shadow"]["predictions"][0]["confidence"] == pytest.approx(0.8)
    assert image.meta["disagreement"] > 1
