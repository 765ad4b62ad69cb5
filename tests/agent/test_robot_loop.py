"""The agent's loop with the real SDK against the virtual Vector, and the CLI end to end (fake server)."""

import json
import stat
import threading
import time

import pytest

from agent.cli import main
from agent.config import load_robot
from agent.vector import VectorLink
from tests.agent.fakes import TOKEN
from tests.agent.helpers import SEEN, make_agent


@pytest.fixture
def deployed(fake_server):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    return fake_server


def test_run_shows_boxes_says_i_see_a_vector_once_and_reports(deployed, virtual_vector, tmp_path):
    link = VectorLink("00000001", backoff_initial=0.05, backoff_max=0.5)
    agent = make_agent(deployed, tmp_path / "data", link=link, frame_interval_s=0.01, max_frames=4, head_angle_deg=12)
    assert agent.run() == 0
    assert virtual_vector.spoken == ["I see a Vector"]  # a new sighting, then rate-limited
    assert len(virtual_vector.screens) == 4
    face = virtual_vector.screens[-1].image
    assert face.size == (184, 96)
    assert (0, 252, 0) in face.getdata() or (0, 255, 0) in face.getdata()  # the green box
    assert abs(virtual_vector.head_angle_rad - 0.2094) < 1e-3
    records = deployed.telemetry_records()
    assert len(records) == 4
    assert records[0]["detections"][0]["label"] == "vector"
    assert deployed.telemetry[0]["headers"]["X-Model-Id"] == "1"
    last = json.loads((tmp_path / "data" / "last_frame.json").read_text())
    assert last["image_id"] == 4 and last["model_id"] == 1


def test_lost_sdk_connection_reconnects_with_backoff(deployed, virtual_vector, tmp_path):
    link = VectorLink("00000001", backoff_initial=0.1, backoff_max=0.4, connect_timeout=0.3)
    agent = make_agent(deployed, tmp_path / "data", link=link, frame_interval_s=0.05, max_frames=12, screen=False)

    def drop_after_some_frames():
        while agent.frames < 4 and not agent.stop.is_set():
            time.sleep(0.02)
        virtual_vector.drop_connections(down_for=1.5)

    dropper = threading.Thread(target=drop_after_some_frames)
    dropper.start()
    assert agent.run() == 0
    dropper.join()
    assert agent.frames == 12
    assert link.connects == 2  # reconnected once the robot was back
    assert link.failures >= 2  # the failed call, then at least one refused attempt while it was down
    assert virtual_vector.counters["connections"] == 2


def test_backoff_grows_and_is_capped():
    link = VectorLink("x", backoff_initial=0.5, backoff_max=4.0)
    assert [link.backoff_delay(n) <= cap for n, cap in enumerate([0.5, 1, 2, 4, 4, 4])] == [True] * 6
    assert link.backoff_delay(10) >= 2.0


def test_cli_enroll_collect_feedback(fake_server, virtual_vector, tmp_path, monkeypatch, capsys):
    config = tmp_path / "conf" / "config.json"
    data = tmp_path / "agent-data"
    base = ["--config", str(config), "--data-dir", str(data)]

    assert main([*base, "enroll", "--server", fake_server.url, "--key", "wrong", "--serial", "00000001"]) == 1
    assert main([*base, "enroll", "--server", fake_server.url, "--key", "enrol-me", "--serial", "00000001"]) == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    robot = load_robot(path=config)
    assert robot.serial == "00000001" and robot.token == "token-for-00000001" and robot.server == fake_server.url

    virtual_vector.set_scene(brightness=0.5)
    assert main([*base, "collect", "--dataset", "vector", "--every", "0", "--count", "3", "--head-angle", "5"]) == 0
    assert len(fake_server.images) == 3
    first = fake_server.images[0]
    assert first["source"] == "camera" and first["dataset"] == "vector" and first["captured_at"].endswith("Z")
    assert first["meta"]["head_angle_deg"] == pytest.approx(5, abs=0.1)
    assert first["meta"]["image_id"] == 1
    assert first["meta"]["exposure_ms"] > 0 and first["meta"]["gain"] > 0
    assert first["headers"]["Authorization"] == "Bearer token-for-00000001"

    # Feedback on a given image, then on the last frame the run loop kept.
    picture = tmp_path / "seen.jpg"
    picture.write_bytes(fake_server.images[1]["bytes"])
    assert main([*base, "feedback", "--reason", "missed", "--image", str(picture), "--dataset", "vector"]) == 0
    assert fake_server.images[-1]["source"] == "feedback"
    assert fake_server.images[-1]["meta"]["reason"] == "missed"

    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    assert main([*base, "run", "--dataset", "vector", "--interval", "0", "--max-frames", "1", "--no-screen"]) == 0
    assert main([*base, "feedback", "--reason", "false_positive"]) == 0
    feedback = fake_server.images[-1]
    assert feedback["source"] == "feedback" and feedback["dataset"] == "vector"
    assert feedback["meta"]["reason"] == "false_positive"
    assert feedback["meta"]["model_id"] == 1
    assert feedback["meta"]["predictions"][0]["label"] == "vector"


def test_cli_run_stops_on_revoked_token(fake_server, virtual_vector, tmp_path, capsys):
    config = tmp_path / "config.json"
    from agent.config import RobotConfig, save_robot

    save_robot(RobotConfig(fake_server.url, "00000001", "revoked-token"), config)
    fake_server.tokens = {TOKEN}
    code = main(["--config", str(config), "--data-dir", str(tmp_path / "d"), "run", "--dataset", "vector"])
    assert code == 3


def test_cli_collect_queues_when_the_server_is_down(fake_server, virtual_vector, tmp_path, capsys):
    from agent.config import RobotConfig, save_robot

    config = tmp_path / "config.json"
    save_robot(RobotConfig(fake_server.url, "00000001", TOKEN), config)
    base = ["--config", str(config), "--data-dir", str(tmp_path / "d")]
    fake_server.down = True
    assert main([*base, "collect", "--dataset", "vector", "--every", "0", "--count", "2"]) == 0
    assert "2 upload(s) queued" in capsys.readouterr().out
    fake_server.down = False
    assert main([*base, "collect", "--dataset", "vector", "--every", "0", "--count", "1"]) == 0
    assert len(fake_server.images) == 3


def test_a_robot_the_sdk_does_not_know_is_an_error_not_an_endless_retry(fake_server, vector_home, tmp_path, capsys):
    from agent.config import RobotConfig, save_robot

    config = tmp_path / "config.json"
    save_robot(RobotConfig(fake_server.url, "0000dead", TOKEN), config)
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    code = main(["--config", str(config), "--data-dir", str(tmp_path / "d"), "run", "--dataset", "vector"])
    assert code == 1
    assert "anki_vector.configure" in capsys.readouterr().err
