"""The verdict where one decides is always against the production model live now: a decision against an earlier
production is not used (the promote page computes a fresh one in the background), and a confirm made while
production changed underneath is a 409 stale_comparison that shows the new comparison."""

import pytest
from django.urls import reverse

from apps.deployments import selectors, services
from apps.deployments.models import Deployment, GateDecision
from tests.builders import gate_decision_row, make_dataset, make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_models(db):
    dataset = make_dataset(slug="verdict", classes=("vector",))
    return dataset, make_model(dataset, 1), make_model(dataset, 2)


def test_a_decision_against_an_earlier_production_is_not_current(two_models):
    dataset, v1, v2 = two_models
    old = gate_decision_row(v1, None, passed=False)  # v1 was gated while nothing was live
    assert selectors.current_gate_decision(v1) == old
    services.model_promote(model=v2, channel="production", reason="v2 first")
    assert selectors.current_gate_decision(v1) is None
    fresh = gate_decision_row(v1, v2, passed=True)
    gate_decision_row(v1, v2, passed=True, test_set_sha256="f" * 64)  # another test set: not this one
    assert selectors.current_gate_decision(v1) == fresh
    assert selectors.gate_decision_is_stale(old, production_id=v2.pk)


def test_a_promotion_records_the_current_decision_not_the_candidates_latest(two_models):
    dataset, v1, v2 = two_models
    gate_decision_row(v1, None, passed=False)
    services.model_promote(model=v2, channel="production", reason="v2 first")
    deployment = services.model_promote(model=v1, channel="production", reason="v1 back").deployment
    assert deployment.gate_decision is None and deployment.gate_passed is None  # was "fail (overridden)"
    current = gate_decision_row(v2, v1, passed=True)
    assert services.model_promote(model=v2, channel="production", reason="again").deployment.gate_decision == current


def test_the_promote_page_queues_a_missing_verdict_and_shows_a_current_one(two_models, client, ml_engineer):
    from django.core.cache import cache

    dataset, v1, v2 = two_models
    gate_decision_row(v1, None, passed=False)
    services.model_promote(model=v2, channel="production", reason="v2 first")
    cache.delete(f"deployments:gate-requested:{v1.pk}")
    client.force_login(ml_engineer)
    url = reverse("deployments:confirm_promote", args=[v1.pk])

    page = client.get(url).content.decode()
    assert 'id="gate-computing"' in page and "promote.js" in page and f"against {v2}" in page
    assert cache.get(f"deployments:gate-requested:{v1.pk}") == 1  # queued once (sent on commit)
    assert services.gate_request(model=v1) is False  # a second page does not queue it again

    gate_decision_row(v1, v2, passed=True, map_diff=0.031, map_diff_ci=[0.012, 0.05])
    page = client.get(url).content.decode()
    assert 'id="gate-verdict"' in page and "gate-computing" not in page
    assert "[0.0120, 0.0500] (a real gain)" in page and f'name="production_id" value="{v2.pk}"' in page


def test_a_confirm_after_production_changed_is_409_stale_comparison(two_models, client, api_as, ml_engineer):
    dataset, v1, v2 = two_models
    v3 = make_model(dataset, 3)
    client.force_login(ml_engineer)
    url = reverse("deployments:confirm_promote", args=[v1.pk])
    # The page was loaded while nothing was live (production_id empty); v2 went live before the confirm.
    services.model_promote(model=v2, channel="production", reason="someone else")
    response = client.post(url, {"channel": "production", "reason": "mine", "production_id": ""})
    page = response.content.decode()
    assert response.status_code == 200 and "Production changed since the comparison was shown" in page
    assert f'name="production_id" value="{v2.pk}"' in page  # confirms against v2 next time
    assert Deployment.objects.filter(model=v1).count() == 0

    api = api_as(ml_engineer)
    body = {"channel": "production", "reason": "script", "expected_production_id": v3.pk}
    refused = api.post(f"/api/v1/models/{v1.pk}/promote", body, format="json")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "stale_comparison" and error["details"]["production_id"] == v2.pk
    body["expected_production_id"] = v2.pk
    assert api.post(f"/api/v1/models/{v1.pk}/promote", body, format="json").status_code == 201
    assert GateDecision.objects.count() == 0


@pytest.mark.slow
def test_stale_verdict_scenario_end_to_end_with_real_evaluations(dataset, tiny_weights, client, ml_engineer):
    """Train v1 while nothing is live, then v2; promote v2; v1's promote page computes a fresh verdict against v2."""
    from django.core.cache import cache

    from apps.deployments.models import PromotionPolicy
    from apps.deployments.tasks import model_gate_task
    from tests.builders import stored_image_row

    for i in range(20):
        stored_image_row(dataset, seed=3000 + i, brightness=(0.45, 1.0, 1.5)[i % 3])
    PromotionPolicy.objects.create(dataset=dataset, min_map50=0.0, min_test_images=20, max_slice_drop=1.0)
    v1 = make_model(dataset, 1, pt=tiny_weights)
    first = services.model_gate(model=v1)
    assert first.production is None
    v2 = make_model(dataset, 2, pt=tiny_weights)
    services.model_promote(model=v2, channel="production", reason="v2 goes first")

    client.force_login(ml_engineer)
    url = reverse("deployments:confirm_promote", args=[v1.pk])
    cache.delete(f"deployments:gate-requested:{v1.pk}")
    assert 'id="gate-computing"' in client.get(url).content.decode()
    result = model_gate_task(v1.pk)  # what the worker runs once the page queued it

    fresh = GateDecision.objects.get(pk=result["decision_id"])
    assert fresh.production == v2 and fresh.test_set_sha256 == first.test_set_sha256
    assert fresh.candidate_evaluation == first.candidate_evaluation  # v1's evaluation on this test set is reused
    page = client.get(url).content.decode()
    assert f'data-decision-id="{fresh.pk}"' in page and f"against {v2}" in page
    low, high = fresh.map_diff_ci
    assert f"[{low:.4f}, {high:.4f}]" in page
    deployment = services.model_promote(
        model=v1, channel="production", reason="v1 back", expected_production_id=v2.pk
    ).deployment
    assert deployment.gate_decision == fresh


def test_decisions_against_an_earlier_production_are_marked_stale_where_listed(two_models, client, ml_engineer):
    dataset, v1, v2 = two_models
    gate_decision_row(v1, None, passed=False)
    # Before this fix a promotion recorded the candidate's latest decision whatever it was against.
    services.model_promote(model=v2, channel="production", reason="v2 first")
    Deployment.objects.create(
        dataset=dataset,
        channel="production",
        action="promote",
        model=v1,
        previous=Deployment.objects.get(model=v2),
        reason="old row",
        gate_decision=GateDecision.objects.get(candidate=v1),
        gate_passed=False,
        is_live=False,
    )
    client.force_login(ml_engineer)
    page = client.get(reverse("deployments:dataset", args=[dataset.slug])).content.decode()
    assert page.count('class="badge text-bg-secondary gate-stale"') == 1  # the decision list
    assert "fail (stale: vs no production)" in page  # the history row
    registry = client.get(reverse("deployments:model_list")).content.decode()
    assert registry.count("gate-stale") == 1


def test_the_run_page_leads_to_the_models_pages(client, ml_engineer, tmp_path):
    from tests.builders import make_training_dataset, register_fake_model, run_in_state

    dataset = make_training_dataset(slug="links")
    run = run_in_state(dataset, status="training")
    model = register_fake_model(run, tmp_path)
    client.force_login(ml_engineer)
    page = client.get(reverse("training:run_detail", args=[run.pk])).content.decode()
    assert reverse("deployments:confirm_promote", args=[model.pk]) in page
    assert reverse("monitoring:dataset", args=["links"]) in page
