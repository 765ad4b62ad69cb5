"""The agent under the faults it meets in the field: it never gives up while it has a working model.

A fake server with real HTTP on loopback (``fakes.FakeServer``) answers a captive portal's HTML, JSON without
``artifacts.onnx`` or of the wrong types, 5xx forever for one queued item; the disk fills up during a download (a
real size-limited tmpfs); queue files and the installed model are damaged on disk.
"""

import errno
import json
import warnings

import pytest

from agent import api as agent_api
from agent.api import BadAnswer, ModelAnswer
from agent.spool import MAX_FAILURES, Spool
from tests.agent.fakes import SmallDisk, constant_detector
from tests.agent.helpers import OTHER, SEEN, FakeLink, frame, make_agent

# Big enough not to fit in what the full disk has left (10 000 boxes: about 200 kB).
BIG = constant_detector([(32, 32, 16, 16, 0.9)], n=10_000)


@pytest.fixture
def agent(fake_server, tmp_path):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    agent = make_agent(fake_server, tmp_path / "data")
    agent.sync_once(force=True)
    assert agent.model.model_id == 1
    return agent


def deploy_second(fake_server, data=OTHER):
    fake_server.add_model(2, data)
    fake_server.deployed = 2


# --- malformed answers ------------------------------------------------------------------------------------------
GOOD = {
    "model_id": 2,
    "sha256": "a" * 64,
    "artifacts": {"onnx": {"url": "/api/v1/models/2/artifacts/onnx", "sha256": "a" * 64, "size": 10}},
}
MALFORMED = {
    "captive portal html": ("text/html", b"<html><body>Please log in to the hotel Wi-Fi</body></html>"),
    "json without artifacts": ("application/json", json.dumps({"model_id": 2, "sha256": "a" * 64}).encode()),
    "json list": ("application/json", b"[1, 2, 3]"),
    "size of the wrong type": (
        "application/json",
        json.dumps({**GOOD, "artifacts": {"onnx": {**GOOD["artifacts"]["onnx"], "size": "big"}}}).encode(),
    ),
    "classes as a string": ("application/json", json.dumps({**GOOD, "classes": "vector"}).encode()),
    "truncated json": ("application/json", json.dumps(GOOD).encode()[:40]),
}


@pytest.mark.parametrize(
    ("answer", "status"),
    [(answer, 200) for answer in MALFORMED.values()] + [(MALFORMED["captive portal html"], 302)],
    ids=[*MALFORMED.keys(), "captive portal redirect"],
)
def test_a_malformed_model_answer_is_logged_and_retried_with_backoff(agent, fake_server, answer, status, caplog):
    deploy_second(fake_server)
    fake_server.model_body, fake_server.model_status = answer, status
    delays = []
    for _ in range(3):
        agent.sync_once(force=True)
        delays.append(agent.models.next_poll)
        assert agent.model.model_id == 1  # still running its model
        assert agent.process_frame(frame())[0].label == "vector"
    assert agent.unavailable_streak == 3
    assert "keeping the current model" in caplog.text
    # The waits grow: 2, 4, 8 s (± jitter) after each malformed answer.
    assert delays[0] < delays[1] < delays[2]
    fake_server.model_body = None  # the portal lets us through
    agent.sync_once(force=True)
    assert agent.model.model_id == 2
    assert agent.unavailable_streak == 0


def test_a_model_answer_of_the_wrong_shape_names_what_is_wrong():
    with pytest.raises(BadAnswer, match="without 'artifacts'"):
        ModelAnswer.from_json({"model_id": 1}, None)
    with pytest.raises(BadAnswer, match="invalid sha256"):
        ModelAnswer.from_json({**GOOD, "sha256": "short", "artifacts": {"onnx": {"url": "/x", "size": 3}}}, None)
    with pytest.raises(BadAnswer, match="wrong shape"):
        ModelAnswer.from_json({**GOOD, "model_id": True}, None)
    assert ModelAnswer.from_json(GOOD, '"e"').size == 10


def test_the_run_loop_survives_a_captive_portal(agent, fake_server):
    fake_server.model_body = MALFORMED["captive portal html"]
    agent.options.frame_interval_s = 0.01
    agent.options.max_frames = 5
    agent.link = FakeLink()
    assert agent.run() == 0
    assert agent.frames == 5 and agent.fatal is None


# --- a full disk during download ----------------------------------------------------------------------------------
@pytest.fixture(params=["tmpfs", "quota"])
def small_disk(request, tmp_path):
    """A real 1 MiB tmpfs (mounting needs root, as in CI), and the write-quota fallback that laptops get."""
    disk = SmallDisk(tmp_path / "disk", 1024 * 1024, mount=request.param == "tmpfs")
    if request.param == "tmpfs" and not disk.real:
        warnings.warn(f"no tmpfs here ({disk.why_not}): the full disk is emulated by a write quota", stacklevel=1)
    yield disk
    disk.close()


def test_a_full_disk_during_download_keeps_the_model_and_resumes_later(fake_server, small_disk, caplog):
    fake_server.add_model(1, SEEN)
    fake_server.deployed = 1
    agent = make_agent(fake_server, small_disk.root / "data")
    agent.sync_once(force=True)
    deploy_second(fake_server, BIG)
    sha = fake_server.models[2].sha256
    filler = small_disk.fill(leave=64 * 1024)

    now = [1000.0]
    agent.models.live.clock = lambda: now[0]

    agent.sync_once(force=True)
    assert agent.model.model_id == 1  # kept running
    assert "No space left on device" in caplog.text
    assert agent.events[-1]["event"] == "model_download_failed"
    assert 0 < agent.store.part_path(sha).stat().st_size < len(BIG)
    # Frames go on while the disk is full (what cannot be queued is counted, not fatal).
    for n in range(3):
        assert agent.process_frame(frame(n))[0].label == "vector"
        now[0] += fake_server.poll_after_s
        agent.sync_once(force=True)
    assert agent.model.model_id == 1
    assert agent.spool.dropped["telemetry_records"] > 0

    filler.unlink()  # space again: the download resumes where the disk stopped it
    partial = agent.store.part_path(sha).stat().st_size
    now[0] += 3600
    agent.sync_once(force=True)
    assert agent.model.model_id == 2
    downloads = [r for r in fake_server.requests if r["path"] == "/api/v1/models/2/artifacts/onnx"]
    assert downloads[-1]["headers"]["Range"] == f"bytes={partial}-"
    assert agent.store.path_of(sha).read_bytes() == BIG


def test_a_full_disk_drops_and_counts_what_cannot_be_queued(tmp_path, small_disk):
    spool = Spool(small_disk.root / "spool")
    filler = small_disk.fill(leave=0)
    assert spool.put_telemetry({"dataset": "vector", "model_id": 1, "records": [{}, {}]}) is False
    assert spool.put_upload(b"x" * 5000, {"dataset": "vector"}) is False
    assert spool.dropped == {"telemetry_records": 2, "uploads": 1}
    assert list(spool.root.iterdir()) == []  # no half-written item or temp file left behind
    filler.unlink()
    assert spool.put_telemetry({"dataset": "vector", "model_id": 1, "records": [{}]}) is True


# --- the disk queue: a poison item, corrupt files --------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 400])
def test_a_poison_item_is_retried_a_bounded_number_of_times_then_set_aside(agent, fake_server, status):
    fake_server.image_status = lambda fields: status if fields["meta"].get("poison") else None
    agent.spool.put_upload(b"poison", {"dataset": "vector", "meta": {"poison": True}})
    for n in range(MAX_FAILURES):
        agent.spool.put_upload(f"good {n}".encode(), {"dataset": "vector", "meta": {}})
        agent.process_frame(frame(n))
        agent.flush()
        assert len(fake_server.images) == n + 1  # what came after the poison item flowed
        assert len(fake_server.telemetry) == n + 1
    assert len(agent.spool) == 0
    assert agent.spool.set_aside["failed"] == 1
    aside = list((agent.spool.root / "set-aside").glob("*.json"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["meta"] == {"poison": True}
    # The next batch tells the server what was set aside.
    agent.process_frame(frame(9))
    agent.flush()
    assert fake_server.telemetry[-1]["set_aside"] == {"corrupt": 0, "failed": 1}


def test_a_server_failing_everything_sets_nothing_aside(agent, fake_server):
    fake_server.status_for_all = 503
    for n in range(2 * MAX_FAILURES):
        agent.process_frame(frame(n))
        agent.flush()
    assert len(agent.spool) == 2 * MAX_FAILURES  # kept: the server's trouble, not the items'
    assert agent.spool.set_aside == {"corrupt": 0, "failed": 0}
    fake_server.status_for_all = None
    agent.flush()
    assert len(agent.spool) == 0
    assert len(fake_server.telemetry_records()) == 2 * MAX_FAILURES


def plant_corrupt_items(spool_dir):
    (spool_dir / "00000000000000000001-telemetry-1.json").write_bytes(b"\x00\xff{not json")
    (spool_dir / "00000000000000000002-upload-1.json").write_text(json.dumps({"dataset": "vector"}))  # no image
    (spool_dir / "00000000000000000003-telemetry-1.json").write_text(json.dumps(["not", "a", "request"]))


def test_corrupt_queue_files_are_set_aside_at_start_up_and_the_rest_flows(agent, fake_server, tmp_path):
    agent.process_frame(frame(1))
    fake_server.down = True
    agent.flush()  # queued on disk, not sent
    plant_corrupt_items(agent.spool.root)
    fake_server.down = False

    again = make_agent(fake_server, tmp_path / "data")  # the restart used to crash on every start
    assert again.spool.set_aside["corrupt"] == 3
    assert len(list((again.spool.root / "set-aside").glob("*.json"))) == 3
    assert again.flush() == 1
    assert len(fake_server.telemetry_records()) == 1
    assert fake_server.telemetry[-1]["set_aside"]["corrupt"] == 3


def test_a_queue_file_damaged_while_running_is_set_aside_when_sent(agent, fake_server):
    plant_corrupt_items(agent.spool.root)
    agent.process_frame(frame(1))
    assert agent.flush() == 1
    assert agent.spool.set_aside["corrupt"] == 3
    assert len(agent.spool) == 0


def test_leftovers_of_a_crash_are_tidied_at_start_up(tmp_path):
    root = tmp_path / "spool"
    root.mkdir()
    (root / ".00000000000000000001-upload-1.json.tmp").write_text("{")
    (root / "00000000000000000001-upload-1.bin").write_bytes(b"an image whose request was never written")
    spool = Spool(root)
    assert list(root.iterdir()) == []
    assert spool.set_aside == {"corrupt": 0, "failed": 0}


# --- the installed model and corrupt downloads -----------------------------------------------------------------
def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_installed_model_is_caught_at_start_up(agent, fake_server, tmp_path):
    deploy_second(fake_server)
    agent.sync_once(force=True)
    assert agent.model.model_id == 2
    flip_a_byte(agent.store.path_of(fake_server.models[2].sha256))

    again = make_agent(fake_server, tmp_path / "data")
    assert again.model.model_id == 1  # the previous good model runs
    assert again.process_frame(frame())[0].confidence == pytest.approx(0.9)
    assert again.events[-1]["event"] == "installed_model_corrupt"
    assert again.events[-1]["model_id"] == 2
    again.flush()
    assert fake_server.telemetry[-1]["agent_events"][-1]["event"] == "installed_model_corrupt"
    # The next poll downloads the damaged model again, intact.
    again.sync_once(force=True)
    assert again.model.model_id == 2
    assert fake_server.count("GET", "/api/v1/models/2/artifacts") == 2


def test_a_flipped_byte_in_the_only_model_means_no_model_until_it_is_downloaded_again(agent, fake_server, tmp_path):
    flip_a_byte(agent.store.path_of(fake_server.models[1].sha256))
    fake_server.down = True
    again = make_agent(fake_server, tmp_path / "data")
    assert again.model is None  # never runs a damaged file
    assert again.process_frame(frame()) is None
    fake_server.down = False
    again.sync_once(force=True)
    assert again.model.model_id == 1


def test_a_corrupt_download_is_retried_with_growing_waits_not_on_every_poll(agent, fake_server):
    deploy_second(fake_server)
    fake_server.flip_artifact_byte = True
    now = [1000.0]
    agent.models.live.clock = lambda: now[0]
    downloads = []
    for _ in range(16):  # polls every poll_after_s (60 s)
        agent.sync_once(force=True)
        downloads.append(fake_server.count("GET", "/api/v1/models/2/artifacts"))
        now[0] += fake_server.poll_after_s
        assert agent.model.model_id == 1
    # Tries at polls 1, 2, 3, 6 and 13 (waits of 0, 1, 3 and 7 intervals), not at all 16.
    tried = [n + 1 for n, count in enumerate(downloads) if count > (downloads[n - 1] if n else 0)]
    assert tried == [1, 2, 3, 6, 13]
    assert sum(1 for e in agent.events if e["event"] == "model_download_corrupt") == 5
    fake_server.flip_artifact_byte = False
    now[0] += 16 * 60
    agent.sync_once(force=True)
    assert agent.model.model_id == 2


def test_an_error_writing_the_download_is_not_fatal(agent, fake_server, monkeypatch):
    """Any OSError from the disk (here EIO from a failing card) is handled like a full disk."""
    deploy_second(fake_server)

    def broken_open(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(agent_api, "open", broken_open, raising=False)
    agent.sync_once(force=True)
    assert agent.model.model_id == 1
    monkeypatch.undo()
    agent.sync_once(force=True)
    assert agent.model.model_id == 2


def test_an_unforeseen_error_in_the_sync_thread_is_logged_and_the_agent_goes_on(agent, fake_server, caplog):
    calls = []

    def flaky(now, *, force=False):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("a bug")

    agent.models.poll_if_due = flaky
    agent.options.frame_interval_s = 0.5
    agent.options.max_frames = 8
    agent.link = FakeLink()
    assert agent.run() == 0
    assert agent.frames == 8 and agent.fatal is None
    assert "sync failed unexpectedly" in caplog.text
    assert len(calls) >= 2  # synced again after the wait


def test_a_captive_portal_makes_the_queue_wait_longer_and_loses_nothing(agent, fake_server):
    fake_server.model_body, fake_server.portal = MALFORMED["captive portal html"], True
    agent.reporter.next_flush = 0
    passes = []
    for n in range(12):  # a flush every telemetry interval (10 s)
        agent.process_frame(frame(n))
        before = len(fake_server.requests)
        agent.reporter.flush_if_due(10_000.0 + n * 10)
        passes.append(len(fake_server.requests) > before)
        assert agent.model.model_id == 1
    # Passes at 0 s, then after waits of 20 and 40 s: not every 10 s.
    assert [n for n, sent in enumerate(passes) if sent] == [0, 2, 6]
    assert agent.spool.set_aside == {"corrupt": 0, "failed": 0}
    fake_server.portal = False
    agent.flush()
    assert len(fake_server.telemetry_records()) == 12


@pytest.mark.parametrize("state", [b"\x00\xffnot json", b'{"current": {"model_id": "x", "bogus": 1}}', b"[]"])
def test_a_damaged_model_state_starts_empty_and_the_next_poll_installs_again(agent, fake_server, tmp_path, state):
    (agent.store.root / "state.json").write_bytes(state)
    again = make_agent(fake_server, tmp_path / "data")
    assert again.model is None
    again.sync_once(force=True)
    assert again.model.model_id == 1
    assert fake_server.count("GET", "/api/v1/models/1/artifacts") == 1  # the file on disk was verified and reused
