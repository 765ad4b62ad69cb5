"""The model page: what a model is (status, its run, where it leads) and what it gets wrong, from its current gate
decision's ultralytics validation: per-class AP, PR and F1 curves, confusion matrices, and image by image the model and
production side by side on every test image (the predictions that validation matched, stored with each evaluation)."""

from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from apps.deployments import selectors
from apps.deployments.evaluation import ANALYSIS_CONF
from apps.training.models import ModelVersion
from vectormlops.permissions import ML_ENGINEER, role_required


@role_required(ML_ENGINEER)
@require_GET
def model_errors(request, model_id):
    model = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=model_id)
    decision = selectors.current_gate_decision(model)
    try:
        conf = min(max(float(request.GET.get("conf", ANALYSIS_CONF)), 0.1), 1.0)
    except ValueError:
        conf = ANALYSIS_CONF
    images = selectors.error_viewer_images(decision, conf=conf) if decision else []
    return render(
        request,
        "deployments/model_errors.html",
        {
            "model": model,
            "dataset": model.dataset,
            "status": selectors.lifecycle_status(model),
            "links": selectors.model_links(model),
            "decision": decision,
            "candidate": model,
            "production": decision.production if decision else None,
            "analysis": selectors.gate_analysis(decision) if decision else {},
            "conf": conf,
            "images": images,
            "classes": list(model.dataset.classes),
            "has_predictions": any("candidate" in row for row in images),
        },
    )
