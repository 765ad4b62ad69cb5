"""Training pages (ML engineers): the list of runs, one run (live chart and log over WebSocket), and the
start-a-run form."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.datasets.models import Dataset, DatasetVersion
from apps.training import hooks, selectors, services
from apps.training.forms import BaseModelForm, RetrainPolicyForm, RetrainScheduleForm, TrainingRunForm
from apps.training.models import BaseModel, RetrainPolicy, TrainingRun
from vectormlops.errors import DomainError
from vectormlops.permissions import ML_ENGINEER, role_required

STATUS_CLASSES = {
    "queued": "secondary",
    "preparing": "info",
    "training": "primary",
    "evaluating": "info",
    "succeeded": "success",
    "failed": "danger",
    "cancelled": "warning",
}


@role_required(ML_ENGINEER)
@require_GET
def run_list(request):
    runs = TrainingRun.objects.select_related("dataset", "dataset_version", "model_version").defer(
        "log_tail", "package_versions"
    )
    dataset = None
    if slug := request.GET.get("dataset"):
        dataset = get_object_or_404(Dataset, slug=slug)
        runs = runs.filter(dataset=dataset)
    page = Paginator(runs.order_by("-id"), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "training/run_list.html",
        {"page": page, "dataset": dataset, "datasets": Dataset.objects.all(), "status_classes": STATUS_CLASSES},
    )


@role_required(ML_ENGINEER)
@require_GET
def run_detail(request, run_id: int):
    run = get_object_or_404(
        TrainingRun.objects.select_related("dataset", "dataset_version", "base_model", "created_by"), pk=run_id
    )
    model = getattr(run, "model_version", None) if run.status == TrainingRun.Status.SUCCEEDED else None
    epochs = selectors.run_curves([run])[0]["epochs"]
    # The run before this one on the same dataset, to compare with in one click.
    previous = TrainingRun.objects.filter(dataset=run.dataset_id, pk__lt=run.pk).order_by("-pk").first()
    return render(
        request,
        "training/run_detail.html",
        {
            "run": run,
            "model": model,
            "artifacts": list(model.artifacts.all()) if model else [],
            "epochs": epochs,
            "status_class": STATUS_CLASSES.get(run.status, "secondary"),
            "status_classes": STATUS_CLASSES,
            "model_links": hooks.model_links_for(model) if model else [],
            "previous_run": previous,
            "time_left_s": selectors.run_time_left_s(run, [e["seconds"] for e in epochs]),
        },
    )


@role_required(ML_ENGINEER)
@require_GET
def run_compare(request):
    """Two or more runs of one dataset: their curves overlaid and the settings that differ."""
    ids = [int(value) for value in request.GET.getlist("runs") if value.isdigit()]
    runs = selectors.runs_for_comparison(ids)
    error = ""
    if len(runs) < 2:
        error = "Pick two or more runs to compare."
    elif len({run.dataset_id for run in runs}) > 1:
        error = "Runs of different datasets are not comparable: pick runs of one dataset."
    if error:
        messages.error(request, error)
        dataset = runs[0].dataset.slug if runs else ""
        return redirect(f"{reverse('training:run_list')}{'?dataset=' + dataset if dataset else ''}")
    return render(
        request,
        "training/run_compare.html",
        {
            "runs": runs,
            "dataset": runs[0].dataset,
            "settings_rows": selectors.run_settings_table(runs),
            "curves": selectors.run_curves(runs),
            "status_classes": STATUS_CLASSES,
        },
    )


def start_run_from_form(form: TrainingRunForm, *, user, trigger: str) -> TrainingRun | None:
    """Start the form's run through the service; a domain error is shown on the form (None is returned)."""
    try:
        return services.training_run_start(**form.run_arguments(), user=user, trigger=trigger)
    except DomainError as exc:
        form.add_error(None, exc.message)
        return None


@role_required(ML_ENGINEER)
@require_http_methods(["GET", "POST"])
def run_new(request):
    dataset = Dataset.objects.filter(slug=request.GET.get("dataset", "")).first()
    if request.method == "POST":
        form = TrainingRunForm(request.POST)
        run = start_run_from_form(form, user=request.user, trigger=TrainingRun.Trigger.WEB) if form.is_valid() else None
        if run is not None:
            messages.success(request, f"Run {run.pk} queued.")
            return redirect("training:run_detail", run_id=run.pk)
    else:
        initial = {"dataset": dataset.slug if dataset else None}
        version_id = request.GET.get("version")
        if dataset and version_id and version_id.isdigit():
            initial["version"] = DatasetVersion.objects.filter(dataset=dataset, pk=int(version_id)).first()
        policy = getattr(dataset, "retrain_policy", None) if dataset else None
        if policy:
            initial.update(epochs=policy.epochs, imgsz=policy.imgsz, batch=policy.batch, base=policy.base)
        form = TrainingRunForm(initial=initial, dataset=dataset)
    return render(request, "training/run_new.html", {"form": form, "dataset": dataset})


@role_required(ML_ENGINEER)
@require_POST
def run_cancel(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        services.training_run_cancel(run=run, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"Cancel requested for run {run.pk}.")
    return redirect("training:run_detail", run_id=run.pk)


@role_required(ML_ENGINEER)
@require_http_methods(["GET", "POST"])
def base_model_list(request):
    """Registered base models, and the form to upload one."""
    form = BaseModelForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            base = services.base_model_register(
                name=form.cleaned_data["name"],
                upload=form.cleaned_data["weights"],
                user=request.user,
                note=form.cleaned_data["note"],
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{base.name} is stored; a training worker is loading it safely.")
            return redirect("training:base_model_list")
    bases = BaseModel.objects.select_related("uploaded_by").order_by("-created_at")
    return render(request, "training/base_models.html", {"form": form, "bases": bases})


@role_required(ML_ENGINEER)
@require_http_methods(["GET", "POST"])
def retraining(request):
    """The retraining schedule: how often beat looks for due datasets, and each dataset's policy (and whether it is
    due now); ML engineers change them here, not only in the admin."""
    overview = selectors.retraining_overview()
    task = overview["task"]
    initial = {
        "every_minutes": task.interval.every if task and task.interval else 15,
        "enabled": bool(task and task.enabled),
    }
    form = RetrainScheduleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.retrain_schedule_set(**form.cleaned_data)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Retraining schedule saved.")
            return redirect("training:retraining")
    return render(request, "training/retraining.html", {**overview, "form": form})


@role_required(ML_ENGINEER)
@require_http_methods(["GET", "POST"])
def retrain_policy_edit(request, slug: str):
    """Create or change one dataset's retrain policy."""
    dataset = get_object_or_404(Dataset, slug=slug)
    policy = RetrainPolicy.objects.filter(dataset=dataset).first()
    initial = {name: getattr(policy, name) for name in RetrainPolicyForm.base_fields} if policy else None
    form = RetrainPolicyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.retrain_policy_set(dataset=dataset, **form.cleaned_data)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Retrain policy of {dataset.slug} saved.")
            return redirect("training:retraining")
    return render(request, "training/retrain_policy.html", {"dataset": dataset, "policy": policy, "form": form})
