"""The promotion gate's decision function, on given evaluation metrics."""

from apps.deployments.gate import Policy, decide


def metrics(map50_95, map50=0.9, slices=None):
    """Evaluation metrics shaped like Evaluation.metrics."""
    return {
        "overall": {"map50": map50, "map50_95": map50_95, "precision": 0.8, "recall": 0.7},
        "per_class": {"vector": {"map50": map50, "map50_95": map50_95, "precision": 0.8, "recall": 0.7}},
        "slices": slices
        or {
            "lighting": {
                "dark": {"images": 10, "map50_95": map50_95, "map50": map50},
                "bright": {"images": 10, "map50_95": map50_95, "map50": map50},
            },
            "robot": {},
            "source": {},
        },
    }


def test_a_candidate_that_beats_production_everywhere_passes():
    decision = decide(candidate=metrics(0.62), production=metrics(0.60), test_images=40, policy=Policy())
    assert decision.passed, decision.reasons
    assert abs(decision.map_diff - 0.02) < 1e-9
    assert decision.comparison["overall"]["map50_95"] == {"candidate": 0.62, "production": 0.60, "delta": 0.62 - 0.60}
    assert decision.comparison["slices"]["lighting"]["dark"]["map50_95"]["production"] == 0.60


def test_a_candidate_below_the_required_gain_fails():
    decision = decide(candidate=metrics(0.61), production=metrics(0.60), test_images=40, policy=Policy(min_gain=0.02))
    assert not decision.passed
    assert any("below the required" in r for r in decision.reasons)


def test_a_worse_candidate_fails_with_the_default_zero_gain():
    decision = decide(candidate=metrics(0.59), production=metrics(0.60), test_images=40, policy=Policy())
    assert not decision.passed


def test_a_slice_that_drops_more_than_allowed_fails_even_when_the_mean_improves():
    candidate = metrics(0.70)
    candidate["slices"]["lighting"]["dark"]["map50_95"] = 0.50
    production = metrics(0.60)
    decision = decide(candidate=candidate, production=production, test_images=40, policy=Policy(max_slice_drop=0.05))
    assert not decision.passed
    assert any("lighting=dark" in r for r in decision.reasons)
    # Within the allowance it passes.
    candidate["slices"]["lighting"]["dark"]["map50_95"] = 0.56
    assert decide(candidate=candidate, production=production, test_images=40, policy=Policy()).passed


def test_a_tiny_slice_is_reported_but_not_gated():
    candidate = metrics(0.70)
    candidate["slices"]["lighting"]["dark"].update(images=2, map50_95=0.1)
    production = metrics(0.60)
    production["slices"]["lighting"]["dark"]["images"] = 2
    decision = decide(candidate=candidate, production=production, test_images=40, policy=Policy(min_slice_images=5))
    assert decision.passed, decision.reasons
    assert decision.comparison["slices"]["lighting"]["dark"]["map50_95"]["delta"] < -0.4


def test_the_first_model_needs_the_map50_floor():
    assert not decide(candidate=metrics(0.3, map50=0.45), production=None, test_images=40, policy=Policy()).passed
    passed = decide(candidate=metrics(0.3, map50=0.55), production=None, test_images=40, policy=Policy())
    assert passed.passed and passed.map_diff is None


def test_too_small_a_test_set_fails():
    decision = decide(candidate=metrics(0.9), production=metrics(0.5), test_images=19, policy=Policy())
    assert not decision.passed
    assert any("at least 20" in r for r in decision.reasons)
