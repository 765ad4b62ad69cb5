"""The shadow model: downloaded and verified like any model, run on the same frames as the live one, never acted on,
within its latency budget, reported in telemetry, its worst disagreements uploaded within the hourly budget, and
dropped (alone) when it fails.

The models are real ONNX files (``constant_detector``): the shadow one differs from the live one on purpose. Slowness
is made deterministic with a fake clock that a wrapped detector moves forward, never with real timing.
"""

import time

import numpy as np
import pytest

from agent import shadow as shadow_module
from agent.api import ModelAnswer
from agent.cli import build_parser
from agent.detector import Detection
from agent.imaging import render_face, to_screen_data
from agent.shadow import disagreement_score
from agent.vector import VectorLink
from tests.agent.fakes import constant_detector
from tests.agent.helpers import NOTHING, SEEN, UNSURE, FakeLink, frame, make_agent

ROOMY = 60_000  # a budget no real frame exceeds: for tests about something else than the budget
ELSEWHERE = constant_detector([(10, 40, 8, 8, 0.8)])  # the shadow sees a robot somewhere the live model does not


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Timed:
    """A detector that takes ``ms`` milliseconds on ``clock`` (and ``fail`` raises instead of detecting)."""

    def __init__(self, inner, clock: FakeClock, ms: float, *, fail: bool = False):
        self.inner, self.clock, self.ms, self.fail = inner, clock, ms, fail

    def detect(self, image, conf=0.25):
        self.clock.now += self.ms / 1000
        if self.fail:
            raise RuntimeError("onnxruntime: out of memory")
        return self.inner.detect(image, conf=conf)


def deploy(server, *, live=SEEN, shadow=ELSEWHERE):
    server.add_model(1, live)
    server.add_model(2, shadow)
    server.deployed, server.shadow = 1, 2
    return server


def timed(agent, *, live_ms: float, shadow_ms: float, shadow_fails: bool = False) -> FakeClock:
    clock = FakeClock()
    agent.clock = clock
    detector, info = agent.models.live.active
    agent.models.live.active = (Timed(detector, clock, live_ms), info)
    detector, info = agent.models.shadow.active
    agent.models.shadow.active = (Timed(detector, clock, shadow_ms, fail=shadow_fails), info)
    return clock


def det(box, confidence=0.9, label="vector"):
    return Detection(label, confidence, list(box))


def test_disagreement_score_matches_boxes_greedily_by_iou_and_label():
    a = det([0, 0, 10, 10])
    assert disagreement_score([], []) == 0
    assert disagreement_score([a], [det([0, 0, 10, 10])]) == pytest.approx(0)
    # Shifted by 1 px: IoU 81/119, matched; the difference of confidence adds too.
    assert disagreement_score([a], [det([1, 0, 10, 10], 0.7)]) == pytest.approx(1 - 90 / 110 + 0.2)
    # Below IoU 0.5 or another label: no match, each box counts its confidence.
    assert disagreement_score([a], [det([5, 5, 10, 10], 0.6)]) == pytest.approx(1.5)
    assert disagreement_score([a], [det([0, 0, 10, 10], 0.6, label="cube")]) == pytest.approx(1.5)
    # Greedy: the best pair is matched first, the other shadow box is left over.
    shadow = [det([2, 0, 10, 10], 0.9), det([0, 0, 10, 10], 0.9)]
    assert disagreement_score([a], shadow) == pytest.approx(0.9)
    # A confident miss weighs more than an unsure one.
    assert disagreement_score([det([0, 0, 10, 10], 0.95)], []) > disagreement_score([det([0, 0, 10, 10], 0.3)], [])


def test_shadow_detections_never_reach_the_screen_or_speech(fake_server, virtual_vector, tmp_path):
    deploy(fake_server, live=NOTHING, shadow=SEEN)  # only the shadow model sees a robot
    link = VectorLink("00000001", backoff_initial=0.05, backoff_max=0.5)
    agent = make_agent(
        fake_server, tmp_path / "data", link=link, frame_interval_s=0.01, max_frames=3, shadow_budget_ms=ROOMY
    )
    agent.sync_once(force=True)
    assert agent.models.shadow.info.model_id == 2
    assert agent.models.shadow.store.has_verified(fake_server.models[2].sha256)  # verified like any model
    assert agent.run() == 0
    assert virtual_vector.spoken == []
    assert len(virtual_vector.screens) == 3
    for screen in virtual_vector.screens:
        pixels = np.asarray(screen.image.convert("RGB")).reshape(-1, 3)
        green = (pixels[:, 0] < 8) & (pixels[:, 1] >= 248) & (pixels[:, 2] < 8)
        assert not green.any()  # no box drawn
    records = fake_server.telemetry_records()
    assert len(records) == 3
    for record in records:
        assert record["detections"] == []
        assert record["shadow"]["model_id"] == 2
        assert record["shadow"]["detections"][0]["label"] == "vector"
        assert record["shadow"]["latency_ms"] >= 0
        assert set(record["image_stats"]) == {"brightness", "contrast"}
    assert all(body["model_id"] == 1 for body in fake_server.telemetry)


def test_the_screen_shows_exactly_what_the_live_model_alone_would_show(fake_server, tmp_path):
    deploy(fake_server, live=SEEN, shadow=ELSEWHERE)
    link = FakeLink()
    agent = make_agent(fake_server, tmp_path / "data", link=link)
    agent.sync_once(force=True)
    shot = frame()
    shown = agent.process_frame(shot)
    agent.react(shot, shown)
    assert [d.box for d in shown] == [pytest.approx([48, 20, 32, 32])]  # the live box, not the shadow's
    assert link.shown == [to_screen_data(render_face(shot.image, shown))]
    assert link.said == ["I see a Vector"]


def test_frames_over_the_default_budget_are_skipped_and_counted(fake_server, tmp_path, monkeypatch):
    monkeypatch.setattr(shadow_module, "PROBE_EVERY", 4)
    agent = make_agent(deploy(fake_server), tmp_path / "data")
    agent.sync_once(force=True)
    clock = timed(agent, live_ms=10, shadow_ms=20)  # twice the live model's time on the same frame: over 1.5x
    for n in range(8):
        agent.process_frame(frame(n))
    assert agent.shadow.budget_ms() == pytest.approx(15)
    # Frames 1-3 run (MIN_SAMPLES: a start never locks the shadow out), 4-6 are skipped, 7 is the probe, 8 skipped.
    assert agent.shadow.ran == 4 and agent.shadow.skipped == 4
    records = [r for _, r in agent.reporter._records]
    assert ["shadow" in r for r in records] == [True, True, True, False, False, False, True, False]
    assert records[0]["shadow"]["latency_ms"] == pytest.approx(20)
    assert records[0]["latency_ms"] == pytest.approx(10)
    agent.flush()
    assert fake_server.telemetry[-1]["shadow_skipped"] == [{"model_id": 2, "frames": 4}]
    # The shadow got faster: its probes bring the decaying estimate under the budget, then it runs on every frame.
    agent.models.shadow.active[0].ms = 4
    for n in range(12):
        agent.process_frame(frame(n))
    assert agent.shadow.shadow_ratio.value() < shadow_module.BUDGET_FACTOR
    ran = agent.shadow.ran
    for n in range(5):
        agent.process_frame(frame(n))
    assert agent.shadow.ran == ran + 5
    assert clock.now > 1000
    agent.flush()
    assert sum(e["frames"] for body in fake_server.telemetry for e in body.get("shadow_skipped", [])) == (
        agent.shadow.skipped
    )


def test_one_slow_frame_does_not_lock_the_shadow_out(fake_server, tmp_path):
    agent = make_agent(deploy(fake_server), tmp_path / "data")
    agent.sync_once(force=True)
    timed(agent, live_ms=10, shadow_ms=11)
    for n in range(5):
        agent.process_frame(frame(n))
    agent.models.shadow.active[0].ms = 500  # the machine paused during one shadow run
    agent.process_frame(frame(6))
    agent.models.shadow.active[0].ms = 11
    for n in range(10):
        agent.process_frame(frame(n))
    assert (agent.shadow.ran, agent.shadow.skipped) == (16, 0)


class Sleepy:
    """A real detector made ``factor`` times slower: it sleeps for the rest of that time after detecting."""

    def __init__(self, inner, factor: float):
        self.inner, self.factor = inner, factor

    def detect(self, image, conf=0.25):
        started = time.perf_counter()
        detections = self.inner.detect(image, conf=conf)
        time.sleep((time.perf_counter() - started) * (self.factor - 1))
        return detections


def real_models(server):
    """Live and shadow: real ONNX sessions of the same small CNN (same layers, other weights), same cost."""
    live = constant_detector([(32, 32, 16, 16, 0.9)], imgsz=128, conv_layers=4, seed=1)
    shadow = constant_detector([(64, 40, 16, 16, 0.8)], imgsz=128, conv_layers=4, seed=2)
    return deploy(server, live=live, shadow=shadow)


def test_a_shadow_as_fast_as_the_live_model_runs_on_every_frame_at_the_default_budget(fake_server, tmp_path, caplog):
    caplog.set_level("INFO", logger="agent")
    agent = make_agent(real_models(fake_server), tmp_path / "data")  # real clock, real sessions, default budget
    agent.sync_once(force=True)
    assert "shadow model 2 loaded" in caplog.text and "live stays model 1" in caplog.text
    assert "now running model 2" not in caplog.text
    for n in range(150):
        agent.process_frame(frame(n))
    # Same cost on the same frames, both warm: at most a short stretch after a pause of the machine is skipped. The
    # bound is loose on purpose (a busy CI machine pauses more); the bug this guards against ran it on 23 of 150.
    assert agent.shadow.ran >= 100, (agent.shadow.ran, agent.shadow.skipped, agent.shadow.shadow_ratio.value())


def test_a_shadow_three_times_slower_is_still_skipped(fake_server, tmp_path):
    agent = make_agent(real_models(fake_server), tmp_path / "data")
    agent.sync_once(force=True)
    detector, info = agent.models.shadow.active
    agent.models.shadow.active = (Sleepy(detector, 3), info)
    for n in range(100):
        agent.process_frame(frame(n))
    # It runs on the first frames (not judged on a start) and then on the probes only.
    assert agent.shadow.skipped >= 85, (agent.shadow.ran, agent.shadow.skipped, agent.shadow.shadow_ratio.value())
    assert agent.shadow.ran <= shadow_module.MIN_SAMPLES + 100 // shadow_module.PROBE_EVERY + 3


def test_the_shadow_model_is_warmed_up_after_loading(fake_server, tmp_path, monkeypatch):
    from agent.detector import Detector

    calls = []
    monkeypatch.setattr(Detector, "warm_up", lambda self, runs=3: calls.append(self.path.name))
    agent = make_agent(deploy(fake_server), tmp_path / "data")
    agent.sync_once(force=True)
    assert calls == [agent.models.shadow.store.path_of(agent.models.shadow.info.sha256).name]


def test_a_fixed_budget_from_the_command_line(fake_server, tmp_path):
    assert build_parser().parse_args(["run", "--dataset", "v", "--shadow-budget-ms", "25"]).shadow_budget_ms == 25
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--dataset", "v", "--shadow-budget-ms", "0"])
    agent = make_agent(deploy(fake_server), tmp_path / "data", shadow_budget_ms=25)
    agent.sync_once(force=True)
    timed(agent, live_ms=10, shadow_ms=20)  # over 1.5 x live, within the 25 ms asked for
    for n in range(5):
        agent.process_frame(frame(n))
    assert (agent.shadow.ran, agent.shadow.skipped) == (5, 0)


def test_disagreement_frames_are_uploaded_within_the_hourly_budget(fake_server, tmp_path):
    options = {"max_uploads_per_hour": 3, "disagreement_window_s": 0, "shadow_budget_ms": ROOMY}
    agent = make_agent(deploy(fake_server), tmp_path / "data", **options)
    agent.sync_once(force=True)
    for n in range(10):
        agent.process_frame(frame(n))
    agent.flush()
    uploads = [i for i in fake_server.images if i["source"] == "shadow_disagreement"]
    assert len(uploads) == len(fake_server.images) == 3
    meta = uploads[0]["meta"]
    assert meta["model_id"] == 1 and meta["shadow"]["model_id"] == 2
    assert meta["shadow"]["model_sha256"] == fake_server.models[2].sha256
    assert meta["predictions"][0]["box"] == [48.0, 20.0, 32.0, 32.0]
    assert meta["shadow"]["predictions"][0]["confidence"] == pytest.approx(0.8)
    assert meta["disagreement"] == pytest.approx(1.7)  # both boxes unmatched: 0.9 + 0.8


def test_uncertain_frames_leave_half_the_budget_to_the_disagreement_frames(fake_server, tmp_path):
    # Given a live model unsure on every frame and a shadow model that agrees with it at first
    options = {"max_uploads_per_hour": 4, "disagreement_window_s": 0, "shadow_budget_ms": ROOMY}
    agent = make_agent(deploy(fake_server, live=UNSURE, shadow=UNSURE), tmp_path / "data", **options)
    agent.sync_once(force=True)
    # When many uncertain frames come first (a shadow disagreement needs a whole window)
    for n in range(10):
        agent.process_frame(frame(n))
    # and then the two models disagree
    live_info, result = agent.model, agent.shadow.run(frame().image, 1.0)
    result.detections = [det([10, 40, 8, 8], 0.8)]
    for n in range(10, 14):
        agent.shadow.consider_upload(frame(n), live_info, [det([32, 32, 16, 16], 0.4)], result, time.monotonic())
    agent.flush()
    # Then the uncertain frames took only half of the hour's budget, and the disagreement frames the rest
    sources = [i["source"] for i in fake_server.images]
    assert sources.count("low_confidence") == 2
    assert sources.count("shadow_disagreement") == 2


def test_without_a_shadow_uncertain_frames_may_use_the_whole_budget(fake_server, tmp_path):
    fake_server.add_model(1, UNSURE)
    fake_server.deployed = 1
    agent = make_agent(fake_server, tmp_path / "data", max_uploads_per_hour=4)
    agent.sync_once(force=True)
    for n in range(10):
        agent.process_frame(frame(n))
    agent.flush()
    assert [i["source"] for i in fake_server.images] == ["low_confidence"] * 4


def test_the_worst_frame_of_a_window_is_the_one_uploaded(fake_server, tmp_path):
    agent = make_agent(deploy(fake_server), tmp_path / "data", disagreement_window_s=60)
    agent.sync_once(force=True)
    live_info = agent.model
    result = agent.shadow.run(frame().image, 1.0)
    runner = agent.shadow
    small = [det([48, 20, 32, 32], 0.9)]  # matches the live box closely
    cases = [(small, 0.0), ([], 10.0), (small, 20.0)]  # scores: about 0, 0.9 (a miss), about 0
    for n, (detections, at) in enumerate(cases):
        result.detections = detections
        runner.consider_upload(frame(n), live_info, [det([48, 20, 32, 32], 0.9)], result, 100 + at)
    agent.flush()
    assert fake_server.images == []  # the window is not over yet
    result.detections = small
    runner.consider_upload(frame(9), live_info, [det([48, 20, 32, 32], 0.9)], result, 100 + 61)  # window over
    agent.flush()
    assert len(fake_server.images) == 1
    assert fake_server.images[0]["meta"]["image_id"] == 1  # the miss
    assert fake_server.images[0]["meta"]["disagreement"] == pytest.approx(0.9)


def test_a_shadow_that_fails_to_load_is_dropped_without_touching_the_live_model(fake_server, tmp_path):
    agent = make_agent(deploy(fake_server, shadow=b"not an onnx model" * 20), tmp_path / "data")
    agent.sync_once(force=True)
    assert agent.model.model_id == 1
    assert agent.models.shadow.active == (None, None)
    shown = agent.process_frame(frame())
    assert shown[0].confidence == pytest.approx(0.9)
    agent.flush()
    assert "shadow" not in fake_server.telemetry_records()[0]
    event = fake_server.telemetry[-1]["agent_events"][0]
    assert event["event"] == "shadow_load_failed" and event["model_id"] == 2 and event["error"]
    assert list(agent.models.shadow_root.glob("*.onnx")) == []
    # Not retried while the server announces the same shadow model …
    agent.etag = None
    agent.sync_once(force=True)
    assert fake_server.count("GET", "/api/v1/models/2/artifacts") == 1
    assert agent.model.model_id == 1
    # … and a different one is downloaded and run.
    fake_server.add_model(3, ELSEWHERE)
    fake_server.shadow = 3
    agent.sync_once(force=True)
    assert agent.models.shadow.info.model_id == 3
    assert agent.process_frame(frame()) is not None
    assert agent.reporter._records[-1][1]["shadow"]["model_id"] == 3


def test_a_shadow_that_fails_while_running_is_reported_and_dropped_the_live_model_goes_on(fake_server, tmp_path):
    agent = make_agent(deploy(fake_server), tmp_path / "data")
    agent.sync_once(force=True)
    timed(agent, live_ms=5, shadow_ms=5, shadow_fails=True)
    shadow_sha = fake_server.models[2].sha256
    for n in range(3):
        assert agent.process_frame(frame(n))[0].confidence == pytest.approx(0.9)
    assert agent.models.shadow.active == (None, None)
    assert not agent.models.shadow.store.path_of(shadow_sha).exists()
    assert shadow_sha in agent.models.shadow.store.rejected
    assert [e["event"] for e in agent.events] == ["shadow_run_failed"]
    assert "out of memory" in agent.events[0]["error"]
    agent.etag = None
    agent.sync_once(force=True)  # the same shadow announced again: not downloaded again
    assert fake_server.count("GET", "/api/v1/models/2/artifacts") == 1
    assert agent.models.shadow.active == (None, None)
    assert agent.model.model_id == 1


def test_one_shadow_model_at_a_time_replaced_then_dropped_with_its_files(fake_server, tmp_path):
    agent = make_agent(deploy(fake_server), tmp_path / "data")
    agent.sync_once(force=True)
    root = agent.models.shadow_root
    assert [p.name for p in root.glob("*.onnx")] == [f"{fake_server.models[2].sha256}.onnx"]
    fake_server.add_model(3, NOTHING)
    fake_server.shadow = 3
    agent.sync_once(force=True)
    assert agent.models.shadow.info.model_id == 3
    assert [p.name for p in root.glob("*.onnx*")] == [f"{fake_server.models[3].sha256}.onnx"]
    # A restart runs the shadow model it had until the server says otherwise.
    again = make_agent(fake_server, tmp_path / "data")
    assert again.models.shadow.info.model_id == 3
    fake_server.shadow = None
    agent.sync_once(force=True)
    assert agent.models.shadow is None
    assert not root.exists()
    assert agent.model.model_id == 1 and agent.store.current.model_id == 1
    assert agent.process_frame(frame()) is not None
    assert "shadow" not in agent.reporter._records[-1][1]


def test_a_shadow_download_cut_resumes_and_a_corrupt_one_is_retried_at_the_next_poll(fake_server, tmp_path):
    agent = make_agent(deploy(fake_server), tmp_path / "data")
    agent.sync_once(force=True)
    fake_server.add_model(3, NOTHING)
    fake_server.shadow = 3
    fake_server.flip_artifact_byte = True
    agent.sync_once(force=True)
    assert agent.models.shadow.active == (None, None)
    assert agent.model.model_id == 1
    assert agent.events[-1]["event"] == "shadow_download_corrupt"
    fake_server.flip_artifact_byte = False
    fake_server.cut_artifact_after = 50
    agent.sync_once(force=True)  # the ETag was not kept: the next poll gets the full answer and tries again
    assert agent.models.shadow.info.model_id == 3
    ranges = [r["headers"].get("Range") for r in fake_server.requests if r["path"].startswith("/api/v1/models/3/")]
    assert ranges[-1] == "bytes=50-"


def test_a_malformed_shadow_part_never_refuses_the_live_model(fake_server, tmp_path):
    body = {
        "model_id": 1,
        "sha256": "a" * 64,
        "artifacts": {"onnx": {"url": "/x", "sha256": "a" * 64, "size": 3}},
        "shadow": {"model_id": 2, "sha256": "b" * 64},
    }
    answer = ModelAnswer.from_json(body, None)
    assert answer.model_id == 1 and answer.shadow is None
    assert "shadow part without 'artifacts'" in answer.shadow_problem
    body["shadow"] = {**body["shadow"], "artifacts": {"onnx": {"url": "/y", "size": 7}}}
    answer = ModelAnswer.from_json(body, None)
    assert (answer.shadow.model_id, answer.shadow.size, answer.shadow.channel) == (2, 7, "shadow")
