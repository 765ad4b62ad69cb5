"""Polling, downloading, verifying and swapping models (against a fake of the server's robot API)."""

import pytest

from agent.api import CorruptDownload
from tests.agent.helpers import OTHER, SEEN, frame, make_agent


@pytest.fixture
def agent(fake_server, tmp_path):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    return make_agent(fake_server, tmp_path / "data")


def test_new_model_is_downloaded_verified_and_run_then_polls_are_304(agent, fake_server):
    assert agent.sync_model() is True
    assert agent.model.model_id == 1
    assert agent.process_frame(frame())[0].confidence == pytest.approx(0.9)

    assert agent.sync_model() is False
    polls = [r for r in fake_server.requests if r["path"] == "/api/v1/robot/model"]
    assert "If-None-Match" not in polls[0]["headers"]
    assert polls[1]["headers"]["If-None-Match"] == agent.etag
    # Every request after the swap reports the model actually running.
    assert polls[1]["headers"]["X-Model-Id"] == "1"
    assert polls[1]["headers"]["X-Model-Sha256"] == fake_server.models[1].sha256
    assert fake_server.count("GET", "/api/v1/models/1/artifacts/onnx") == 1


def test_download_resumes_with_range_after_a_cut(agent, fake_server):
    fake_server.cut_artifact_after = 100
    assert agent.sync_model() is True
    downloads = [r for r in fake_server.requests if r["path"].startswith("/api/v1/models/1/artifacts")]
    assert len(downloads) == 2
    assert "Range" not in downloads[0]["headers"]
    assert downloads[1]["headers"]["Range"] == "bytes=100-"
    assert agent.store.path_of(fake_server.models[1].sha256).read_bytes() == SEEN


def test_a_byte_flipped_in_transit_is_never_swapped_in(agent, fake_server):
    agent.sync_model()
    fake_server.add_model(2, OTHER)
    fake_server.deployed = 2
    fake_server.flip_artifact_byte = True
    with pytest.raises(CorruptDownload):
        agent.sync_model()
    assert agent.model.model_id == 1
    assert not agent.store.path_of(fake_server.models[2].sha256).exists()
    assert not agent.store.part_path(fake_server.models[2].sha256).exists()
    assert agent.events[-1]["event"] == "model_download_corrupt"
    # In transit only: once the bytes arrive intact the model is installed.
    fake_server.flip_artifact_byte = False
    assert agent.sync_model() is True
    assert agent.model.model_id == 2


def test_a_wrong_announced_sha256_is_never_swapped_in(agent, fake_server):
    agent.sync_model()
    fake_server.add_model(2, OTHER, announced_sha="0" * 64)
    fake_server.deployed = 2
    with pytest.raises(CorruptDownload):
        agent.sync_model()
    assert agent.model.model_id == 1
    assert agent.store.current.model_id == 1


def test_a_model_that_fails_to_load_is_reported_and_the_previous_one_kept(agent, fake_server):
    agent.sync_model()
    fake_server.add_model(2, b"not an onnx model at all" * 10)
    fake_server.deployed = 2
    assert agent.sync_model() is False
    assert agent.model.model_id == 1
    assert agent.process_frame(frame()) is not None
    assert fake_server.models[2].sha256 in agent.store.rejected
    # Reported to the server with the next telemetry batch, and not downloaded again on the next polls.
    agent.flush()
    assert fake_server.telemetry[-1]["agent_events"][0]["event"] == "model_load_failed"
    assert fake_server.telemetry[-1]["agent_events"][0]["model_id"] == 2
    agent.etag = None
    agent.sync_model()
    assert fake_server.count("GET", "/api/v1/models/2/artifacts") == 1


def test_rollback_to_the_previous_model_needs_no_download(agent, fake_server):
    agent.sync_model()
    fake_server.add_model(2, OTHER)
    fake_server.deployed = 2
    agent.sync_model()
    assert (agent.store.current.model_id, agent.store.previous.model_id) == (2, 1)
    fake_server.deployed = 1
    assert agent.sync_model() is True
    assert agent.model.model_id == 1
    assert fake_server.count("GET", "/api/v1/models/1/artifacts") == 1


def test_a_restarted_agent_runs_its_model_without_the_server(agent, fake_server, tmp_path):
    agent.sync_model()
    fake_server.down = True
    again = make_agent(fake_server, tmp_path / "data")
    assert again.model.model_id == 1
    assert again.process_frame(frame())[0].label == "vector"
    again.sync_once(force=True)  # unreachable server: the model keeps running
    assert again.model.model_id == 1
    assert again.unavailable_streak == 1
