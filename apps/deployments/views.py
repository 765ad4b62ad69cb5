"""Pages of the deployments app (ml_engineer): live deployments, history, gate decisions, the model registry,
and the confirmation pages that admin actions open (side-by-side comparison and a required reason)."""

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render

from apps.datasets.models import Dataset
from apps.deployments import gate, selectors, services
from apps.deployments.models import Evaluation, GateDecision
from apps.training.models import ModelVersion
from vectormlops.errors import DomainError
from vectormlops.permissions import ML_ENGINEER, role_required


@role_required(ML_ENGINEER)
def home(request):
    """Datasets with their live production and canary models."""
    datasets = Dataset.objects.annotate(live_count=Count("deployments", filter=Q(deployments__is_live=True))).order_by(
        "slug"
    )
    rows = [{"dataset": d, **selectors.live_deployments(d)} for d in datasets]
    return render(request, "deployments/home.html", {"rows": rows})


@role_required(ML_ENGINEER)
def dataset_page(request, slug):
    """One dataset: live deployments, history, and gate decisions side by side (live over WebSocket)."""
    dataset = get_object_or_404(Dataset, slug=slug)
    decisions = (
        GateDecision.objects.filter(candidate__dataset=dataset)
        .select_related("candidate", "production")
        .order_by("-created_at", "-id")[:20]
    )
    return render(
        request,
        "deployments/dataset.html",
        {
            "dataset": dataset,
            "live": selectors.live_deployments(dataset),
            "history": selectors.deployment_history(dataset)[:100],
            "decisions": decisions,
            "policy": services.policy_for(dataset),
        },
    )


@role_required(ML_ENGINEER)
def model_list(request):
    """The model registry: every model with its lifecycle status and latest gate verdict."""
    models = list(selectors.models_with_status())
    for model in models:
        model.status = selectors.lifecycle_status(model)
        decisions = model.prefetched_decisions
        model.latest_decision = decisions[0] if decisions else None
    return render(request, "deployments/model_list.html", {"models": models})


def comparison_for(candidate: ModelVersion, production: ModelVersion | None) -> tuple[dict | None, object]:
    """The side-by-side comparison of two models: from the latest gate decision between them, else from stored
    evaluations on the same test set; (None, None) when they were never evaluated together."""
    decision = (
        GateDecision.objects.filter(candidate=candidate, production=production).order_by("-created_at", "-id").first()
    )
    if decision and decision.comparison:
        return decision.comparison, decision
    evaluations = Evaluation.objects.filter(model=candidate).order_by("-created_at")
    for evaluation in evaluations:
        other = (
            Evaluation.objects.filter(model=production, test_set_sha256=evaluation.test_set_sha256).first()
            if production
            else None
        )
        if production is None or other is not None:
            return gate.compare(evaluation.metrics, other.metrics if other else None), decision
    return None, decision


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class PromoteForm(ReasonForm):
    channel = forms.ChoiceField(choices=[("production", "production"), ("canary", "canary")])
    canary_percent = forms.IntegerField(min_value=1, max_value=100, required=False, initial=10)


class CanaryEndForm(ReasonForm):
    outcome = forms.ChoiceField(choices=[("promote", "Promote the canary to production"), ("drop", "Drop the canary")])


@role_required(ML_ENGINEER)
def confirm_promote(request, model_id):
    """Confirm "Promote to production" / "Start canary (N%)": comparison with production, reason required."""
    model = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=model_id)
    live = selectors.live_deployments(model.dataset)
    production = live["production"].model if live["production"] else None
    initial = {"channel": request.GET.get("channel", "production"), "canary_percent": request.GET.get("percent", 10)}
    form = PromoteForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            deployment = services.model_promote(
                model=model,
                channel=form.cleaned_data["channel"],
                user=request.user,
                reason=form.cleaned_data["reason"],
                canary_percent=form.cleaned_data.get("canary_percent"),
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{model} is live on {deployment.channel}.")
            return redirect("deployments:dataset", slug=model.dataset.slug)
    comparison, decision = comparison_for(model, production if production != model else None)
    return render(
        request,
        "deployments/confirm.html",
        {
            "title": f"Promote {model}",
            "form": form,
            "candidate": model,
            "production": production,
            "comparison": comparison,
            "decision": decision,
            "dataset": model.dataset,
        },
    )


@role_required(ML_ENGINEER)
def confirm_rollback(request, slug):
    """Confirm "Roll back production": which model comes back, the comparison, and a reason."""
    dataset = get_object_or_404(Dataset, slug=slug)
    live = selectors.live_deployments(dataset)
    current = live["production"]
    target = services._rollback_target(current) if current else None
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            deployment = services.deployment_rollback(
                dataset=dataset, user=request.user, reason=form.cleaned_data["reason"]
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Rolled back: {deployment.model} is live in production again.")
            return redirect("deployments:dataset", slug=slug)
    comparison, decision = (None, None)
    if current and target and target.model_id:
        comparison, decision = comparison_for(target.model, current.model)
    return render(
        request,
        "deployments/confirm.html",
        {
            "title": f"Roll back production of {dataset.slug}",
            "form": form,
            "candidate": target.model if target else None,
            "production": current.model if current else None,
            "comparison": comparison,
            "decision": decision,
            "dataset": dataset,
            "rollback": True,
        },
    )


@role_required(ML_ENGINEER)
def confirm_canary_end(request, slug):
    """Confirm "End canary": promote it or drop it, with the comparison and a reason."""
    dataset = get_object_or_404(Dataset, slug=slug)
    live = selectors.live_deployments(dataset)
    form = CanaryEndForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.canary_end(
                dataset=dataset,
                promote=form.cleaned_data["outcome"] == "promote",
                user=request.user,
                reason=form.cleaned_data["reason"],
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "The canary has ended.")
            return redirect("deployments:dataset", slug=slug)
    canary, production = live["canary"], live["production"]
    comparison, decision = (None, None)
    if canary:
        comparison, decision = comparison_for(canary.model, production.model if production else None)
    return render(
        request,
        "deployments/confirm.html",
        {
            "title": f"End the canary of {dataset.slug}",
            "form": form,
            "candidate": canary.model if canary else None,
            "production": production.model if production else None,
            "comparison": comparison,
            "decision": decision,
            "dataset": dataset,
        },
    )
