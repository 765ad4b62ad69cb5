"""The disk queue: bounded (oldest dropped, counted), replayed when the server is back, nothing lost meanwhile."""

import json

from agent.loops import EXIT_REVOKED
from agent.spool import Spool
from tests.agent.helpers import SEEN, UNSURE, FakeLink, frame, make_agent


def test_spool_is_bounded_oldest_first_with_a_count(tmp_path):
    spool = Spool(tmp_path / "spool", max_items=3)
    for n in range(5):
        spool.put_telemetry({"dataset": "vector", "model_id": 1, "records": [{"n": n}, {"n": n}]})
    spool.put_upload(b"jpeg", {"dataset": "vector"})
    kept = [item.load() for item in spool.items()]
    assert [k.get("records", [{}])[0].get("n") for k in kept] == [3, 4, None]
    assert spool.dropped == {"telemetry_records": 6, "uploads": 0}
    # The count survives a restart.
    assert Spool(tmp_path / "spool", max_items=3).dropped["telemetry_records"] == 6


def test_spool_bounds_bytes_too(tmp_path):
    spool = Spool(tmp_path / "spool", max_items=100, max_bytes=2500)
    for _ in range(4):
        spool.put_upload(b"x" * 1000, {"dataset": "vector"})
    assert len(spool) == 2
    assert spool.dropped["uploads"] == 2


def test_outage_queues_on_disk_and_replays_in_order_when_back(fake_server, tmp_path):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    agent = make_agent(fake_server, tmp_path / "data")
    agent.sync_once(force=True)
    assert agent.model.model_id == 1

    fake_server.down = True  # a server restart / network cut
    for n in range(1, 8):
        agent.process_frame(frame(n))
        agent.sync_once(force=True)
    assert agent.model.model_id == 1  # kept running its model
    assert len(agent.spool) == 7
    assert fake_server.telemetry == []

    fake_server.down = False
    agent.process_frame(frame(8))
    agent.sync_once(force=True)
    assert len(agent.spool) == 0
    records = fake_server.telemetry_records()
    assert len(records) == 8  # no telemetry lost across the outage
    assert [r["captured_at"] for r in records] == sorted(r["captured_at"] for r in records)
    assert all(body["model_id"] == 1 for body in fake_server.telemetry)
    assert records[0]["detections"][0]["label"] == "vector"
    assert set(records[0]["image_stats"]) == {"brightness", "contrast"}


def test_long_outage_drops_oldest_and_reports_the_count(fake_server, tmp_path):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    agent = make_agent(fake_server, tmp_path / "data", spool_max_items=3)
    agent.sync_once(force=True)
    fake_server.down = True
    for n in range(6):
        agent.process_frame(frame(n))
        agent.flush()
    fake_server.down = False
    agent.flush()
    assert len(fake_server.telemetry_records()) == 3
    assert fake_server.telemetry[-1]["dropped"]["telemetry_records"] == 3


def test_uncertain_frames_are_uploaded_as_low_confidence_at_most_m_per_hour(fake_server, tmp_path):
    fake_server.add_model(1, UNSURE)
    fake_server.deployed = 1
    agent = make_agent(fake_server, tmp_path / "data", max_uploads_per_hour=2)
    agent.sync_once(force=True)
    for n in range(5):
        shown = agent.process_frame(frame(n))
        assert shown == []  # 0.4 is under the model's threshold (0.5): not shown, but uncertain
    agent.flush()
    uploads = fake_server.images
    assert len(uploads) == 2
    assert {u["source"] for u in uploads} == {"low_confidence"}
    assert uploads[0]["meta"]["best_confidence"] == 0.4
    assert uploads[0]["meta"]["model_id"] == 1
    assert uploads[0]["dataset"] == "vector" and uploads[0]["captured_at"].endswith("Z")


def test_a_revoked_token_stops_the_agent_with_a_clear_message(fake_server, tmp_path, caplog):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    link = FakeLink()
    agent = make_agent(fake_server, tmp_path / "data", token="revoked", link=link, frame_interval_s=0.01)
    assert agent.run() == EXIT_REVOKED
    assert "revoked" in caplog.text
    # It stopped rather than hammering the server.
    assert len(fake_server.requests) <= 2


def test_telemetry_batches_hold_at_most_500_records(fake_server, tmp_path):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    agent = make_agent(fake_server, tmp_path / "data")
    agent.sync_once(force=True)
    record = {"captured_at": "2026-11-27T10:00:00Z", "latency_ms": 1.0, "detections": [], "image_stats": {}}
    for _ in range(1200):
        agent.reporter.record(1, dict(record))
    agent.flush()
    assert [len(body["records"]) for body in fake_server.telemetry] == [500, 500, 200]
    assert json.loads(json.dumps(fake_server.telemetry[0]["records"][0])) == record
