"""Evaluation and the promotion gate: a candidate is evaluated beside the production model on the same test set,
the dataset's policy decides, and a passing candidate is promoted when the policy says so."""

from django.db import IntegrityError, transaction

from apps.datasets.models import Dataset
from apps.deployments import selectors, shadow
from apps.deployments.models import Deployment, Evaluation, GateDecision, PromotionPolicy
from apps.deployments.services.handoff import model_handoff
from apps.deployments.services.promotion import model_promote
from apps.labeling.tasks import suspect_labels_task
from apps.training.models import ModelVersion
from vectormlops.errors import ValidationFailed
from vectormlops.events import broadcast


def policy_for(dataset: Dataset) -> PromotionPolicy:
    """The dataset's promotion policy (created with the defaults on first use)."""
    policy, _ = PromotionPolicy.objects.get_or_create(dataset=dataset)
    return policy


def model_evaluate(*, model: ModelVersion, items=None) -> Evaluation:
    """Evaluate ``model`` on its dataset's current test split (a stored evaluation of the same test set is reused).

    Runs ultralytics for a while: call it outside any transaction (a Celery task)."""
    from apps.deployments import evaluation as ev

    dataset = model.dataset
    classes = list(dataset.classes)
    if list(model.classes) != classes:
        raise ValidationFailed(
            f"Model {model.pk} was trained on classes {model.classes}, the dataset now has {classes}.",
            code="classes_differ",
        )
    items = ev.current_test_set(dataset) if items is None else items
    if not items:
        raise ValidationFailed("The dataset has no approved test images to evaluate on.", code="empty_test_set")
    sha = ev.test_set_sha256(items, classes)
    existing = Evaluation.objects.filter(model=model, test_set_sha256=sha).first()
    if existing is not None:
        return existing
    metrics, stats, seconds = ev.evaluate_model(model, items, classes)
    stats_path = ev.save_stats(model.pk, sha, stats)
    model_handoff(suspect_labels_task, dataset=dataset, model=model)
    try:
        with transaction.atomic():
            return Evaluation.objects.create(
                model=model,
                dataset=dataset,
                test_set_sha256=sha,
                image_count=len(items),
                metrics=metrics,
                stats_path=stats_path,
                seconds=seconds,
            )
    except IntegrityError:  # evaluated concurrently by another worker: theirs is as good as ours
        return Evaluation.objects.get(model=model, test_set_sha256=sha)


def _leakage_check(model: ModelVersion, items, policy: PromotionPolicy) -> dict:
    """Test images with a near-duplicate among the images the candidate was trained on (a leak flatters it)."""
    from apps.deployments import evaluation as ev

    training = selectors.training_images(model)
    duplicates = {
        "checked": training is not None,
        "max_distance": policy.near_duplicate_distance,
        "pairs": ev.near_duplicates(training or [], items, policy.near_duplicate_distance),
    }
    if training is None:
        duplicates["note"] = "The model's training data is unknown (no training run with a dataset version)."
    return duplicates


def _production_evaluate(production: ModelVersion | None, items) -> tuple[Evaluation | None, list[str]]:
    """The production model's evaluation on the candidate's test set, or None and why not."""
    if production is None:
        return None, []
    try:
        return model_evaluate(model=production, items=items), []
    except ValidationFailed as exc:
        return None, [f"The production model could not be evaluated on this test set: {exc.message}"]


def _map_diff_interval(candidate: Evaluation, production: Evaluation | None, classes: list[str]) -> list:
    """Bootstrap interval of the mAP difference from both evaluations' per-image stats; [] when not computable."""
    from apps.deployments import evaluation as ev

    if production is None:
        return []
    cand_stats, prod_stats = ev.load_stats(candidate.stats_path), ev.load_stats(production.stats_path)
    if cand_stats is None or prod_stats is None:
        return []
    return ev.bootstrap_map_diff(cand_stats, prod_stats, classes)


def model_gate(*, model: ModelVersion) -> GateDecision:
    """Evaluate the candidate and the current production model on the same test set and apply the policy; the
    leakage check and the shadow evidence are listed beside the verdict."""
    from apps.deployments import evaluation as ev
    from apps.deployments import gate

    dataset = model.dataset
    policy = policy_for(dataset)
    rules = gate.Policy.of(policy)
    items = ev.current_test_set(dataset)
    production = selectors.production_model(dataset)
    if production == model:
        production = None
    duplicates = _leakage_check(model, items, policy)
    try:
        cand_eval = model_evaluate(model=model, items=items)
    except ValidationFailed as exc:
        return GateDecision.objects.create(
            candidate=model,
            production=production,
            passed=False,
            reasons=[f"The candidate could not be evaluated: {exc.message}"],
            near_duplicates=duplicates,
            policy=rules.as_dict(),
        )
    prod_eval, reasons_extra = _production_evaluate(production, items)
    decision = gate.decide(
        candidate=cand_eval.metrics,
        production=prod_eval.metrics if prod_eval else None,
        test_images=len(items),
        policy=rules,
    )
    # The shadow evidence (field numbers beside the live model) is listed beside the offline verdict.
    shadow_passed, shadow_reasons, shadow_evidence = shadow.shadow_check(
        model=model, live_model=production, policy=policy
    )
    passed = decision.passed and shadow_passed and not reasons_extra
    reasons = decision.reasons + shadow_reasons + reasons_extra
    if duplicates["pairs"]:
        reasons.append(
            f"Leakage warning: {len(duplicates['pairs'])} test image(s) have a near-duplicate in the training data."
        )
    interval = _map_diff_interval(cand_eval, prod_eval, list(dataset.classes))  # CPU work: before the transaction
    with transaction.atomic():
        row = GateDecision.objects.create(
            candidate=model,
            production=production,
            candidate_evaluation=cand_eval,
            production_evaluation=prod_eval,
            test_set_sha256=cand_eval.test_set_sha256,
            passed=passed,
            reasons=reasons,
            comparison=decision.comparison,
            map_diff=decision.map_diff,
            map_diff_ci=interval,
            near_duplicates=duplicates,
            policy=rules.as_dict(),
            shadow=shadow_evidence,
        )
        broadcast(
            f"deployments.{dataset.slug}",
            "gate",
            {"model_id": model.pk, "version": model.number, "passed": passed, "reasons": reasons},
        )
    return row


def model_evaluate_and_gate(*, model: ModelVersion) -> GateDecision:
    """After training: gate the candidate and, when the dataset's policy says so, promote a passing one."""
    decision = model_gate(model=model)
    if decision.passed and policy_for(model.dataset).auto_promote:
        model_promote(
            model=model,
            channel=Deployment.Channel.PRODUCTION,
            reason="Automatic promotion: the candidate passed the gate. " + " ".join(decision.reasons),
            gate_decision=decision,
        )
    return decision


GATE_REQUEST_TTL_S = 3600  # a queued gate computation is not queued again for this long (a lost one: after it)


def _gate_request_key(model: ModelVersion) -> str:
    return f"deployments:gate-requested:{model.pk}"


def gate_request(*, model: ModelVersion) -> bool:
    """Queue the computation of ``model``'s gate decision against the production model live now, unless one is
    queued already (several open promote pages queue one). True when this call queued it."""
    from django.core.cache import cache

    from apps.deployments.tasks import model_gate_task

    if not cache.add(_gate_request_key(model), 1, GATE_REQUEST_TTL_S):
        return False
    transaction.on_commit(lambda: model_gate_task.delay(model.pk))
    return True


def gate_current_or_request(
    *, model: ModelVersion, production: ModelVersion | None
) -> tuple[GateDecision | None, bool]:
    """``model``'s gate decision against ``production`` (the model live now) that still applies; when there is none
    and one can be computed (another model than production's, with artifacts), its computation is queued (once).
    Returns (the decision or None, whether one is being computed)."""
    decision = selectors.current_gate_decision(model, production=production)
    if decision is not None or production == model or not model.artifacts.exists():
        return decision, False
    gate_request(model=model)
    return None, True


def gate_request_done(*, model: ModelVersion) -> None:
    from django.core.cache import cache

    cache.delete(_gate_request_key(model))
