"""Celery tasks of deployments: thin, take ids, call a service."""

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def evaluate_and_gate_task(model_id: int) -> dict:
    """Evaluate a freshly trained model against production and apply the promotion gate (and auto-promotion)."""
    from apps.deployments.services import model_evaluate_and_gate
    from apps.training.models import ModelVersion

    model = ModelVersion.objects.filter(pk=model_id).select_related("dataset").first()
    if model is None:
        log.warning("model %s vanished before its evaluation", model_id)
        return {"model_id": model_id, "skipped": True}
    decision = model_evaluate_and_gate(model=model)
    return {"model_id": model_id, "decision_id": decision.pk, "passed": decision.passed}


@shared_task(acks_late=True)
def model_gate_task(model_id: int) -> dict:
    """Compute a candidate's gate decision against the production model live now (asked for by its promote page);
    never promotes. The page hears the "gate" event and shows the verdict."""
    from apps.deployments.services import gate_request_done, model_gate
    from apps.training.models import ModelVersion

    model = ModelVersion.objects.filter(pk=model_id).select_related("dataset").first()
    if model is None:
        return {"model_id": model_id, "skipped": True}
    try:
        decision = model_gate(model=model)
    finally:
        gate_request_done(model=model)
    return {"model_id": model_id, "decision_id": decision.pk, "passed": decision.passed}


@shared_task(ignore_result=True)
def shadow_gate_task() -> dict:
    """Hourly: gate live shadow models again as their field evidence grows; the gate auto-promotes a passing one when
    the dataset's policy says so (and requires shadow evidence)."""
    from apps.deployments.selectors import shadow_gates_due
    from apps.deployments.services import model_evaluate_and_gate

    results = {}
    for model in shadow_gates_due():
        decision = model_evaluate_and_gate(model=model)
        results[model.pk] = decision.passed
    return {"gated": results}
