"""What a model gets wrong, image by image: the candidate and the production model of its current gate decision side
by side on every test image, from the predictions ultralytics' validation matched (stored with each evaluation)."""

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
            "decision": decision,
            "conf": conf,
            "images": images,
            "classes": list(model.dataset.classes),
            "has_predictions": any("candidate" in row for row in images),
        },
    )
