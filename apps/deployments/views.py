"""Pages of the deployments app (ml_engineer): live deployments, history, gate decisions, the model registry,
and the confirmation pages that admin actions open (side-by-side comparison and a required reason)."""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render

from apps.datasets.models import Dataset
from apps.deployments import selectors, services
from apps.training.models import ModelVersion
from vectormlops.errors import DomainError
from vectormlops.permissions import ML_ENGINEER, role_required


@role_required(ML_ENGINEER)
def home(request):
    """Datasets with their live production and canary models, and the fleet."""
    return render(
        request, "deployments/home.html", {"rows": selectors.datasets_with_live(), "fleet": selectors.fleet()}
    )


@role_required(ML_ENGINEER)
def dataset_page(request, slug):
    """One dataset: live deployments, history, and gate decisions side by side (live over WebSocket)."""
    dataset = get_object_or_404(Dataset, slug=slug)
    return render(request, "deployments/dataset.html", {"dataset": dataset, **selectors.dataset_overview(dataset)})


@role_required(ML_ENGINEER)
def model_list(request):
    """The model registry: every model with its lifecycle status and latest gate verdict."""
    return render(request, "deployments/model_list.html", {"models": selectors.model_registry()})


def _confirm_page(request, *, title, form, dataset, candidate, production, baseline=None, decision=None, **extra):
    """The confirmation page behind an admin action: the side-by-side comparison (candidate against ``baseline``,
    by default the production model; from ``decision`` when given) and the reason form."""
    baseline = production if baseline is None else baseline
    if decision is not None:
        comparison = decision.comparison or None
    else:
        comparison, decision = selectors.comparison_for(candidate, baseline or None) if candidate else (None, None)
    context = {
        "title": title,
        "form": form,
        "candidate": candidate,
        "production": production,
        "comparison": comparison,
        "decision": decision,
        "dataset": dataset,
        **extra,
    }
    return render(request, "deployments/confirm.html", context)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "form-control", "placeholder": "Why (kept in the history)"}),
        max_length=2000,
    )


class PromoteForm(ReasonForm):
    channel = forms.ChoiceField(
        choices=[("production", "production"), ("canary", "canary")],
        widget=forms.Select(attrs={"class": "form-select"}),
    )
    canary_percent = forms.IntegerField(
        min_value=1,
        max_value=100,
        required=False,
        initial=10,
        label="Canary share (% of robots)",
        widget=forms.NumberInput(attrs={"class": "form-control"}),
    )
    production_id = forms.IntegerField(required=False, widget=forms.HiddenInput)  # what the comparison was against
    field_order = ["channel", "canary_percent", "reason", "production_id"]


class CanaryEndForm(ReasonForm):
    outcome = forms.ChoiceField(
        choices=[("promote", "Promote the canary to production"), ("drop", "Drop the canary")],
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
    )
    field_order = ["outcome", "reason"]


@role_required(ML_ENGINEER)
def confirm_promote(request, model_id):
    """Confirm "Promote to production" / "Start canary (N%)": the gate's verdict against the production model live
    now (computed in the background when missing; the page updates when it is ready), reason required. A confirm
    after production changed underneath is refused and shows the new comparison."""
    model = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=model_id)
    production = selectors.production_model(model.dataset)
    initial = {
        "channel": request.GET.get("channel", "production"),
        "canary_percent": request.GET.get("percent", 10),
        "production_id": production.pk if production else "",
    }
    form = PromoteForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            promotion = services.model_promote(
                model=model,
                channel=form.cleaned_data["channel"],
                user=request.user,
                reason=form.cleaned_data["reason"],
                canary_percent=form.cleaned_data.get("canary_percent"),
                # Absent (an old form or script): unchecked; empty: nothing was in production.
                expected_production_id=form.cleaned_data["production_id"] if "production_id" in request.POST else ...,
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
            if exc.code == "stale_comparison":
                # The page shows the comparison against the production live now, and confirms against that one.
                production = selectors.production_model(model.dataset)
                form.data = form.data.copy()
                form.data["production_id"] = production.pk if production else ""
        else:
            messages.success(request, f"{model} is live on {promotion.deployment.channel}.")
            return redirect("deployments:dataset", slug=model.dataset.slug)
    decision, computing = services.gate_current_or_request(model=model, production=production)
    return _confirm_page(
        request,
        title=f"Promote {model}",
        form=form,
        dataset=model.dataset,
        candidate=model,
        production=production,
        baseline=production if production != model else False,  # the live model itself: compare with nothing
        decision=decision,
        computing=computing,
        gate_current=True,
        analysis=selectors.gate_analysis(decision) if decision else {},
        runs=selectors.training_runs_of(model, production),
    )


@role_required(ML_ENGINEER)
def confirm_rollback(request, slug):
    """Confirm "Roll back production": which model comes back, the comparison, and a reason."""
    dataset = get_object_or_404(Dataset, slug=slug)
    production, target = selectors.rollback_preview(dataset)
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
    return _confirm_page(
        request,
        title=f"Roll back production of {dataset.slug}",
        form=form,
        dataset=dataset,
        candidate=target,
        production=production,
        rollback=True,
        nothing_to_do=target is None,
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
    return _confirm_page(
        request,
        title=f"End the canary of {dataset.slug}",
        form=form,
        dataset=dataset,
        candidate=canary.model if canary else None,
        production=production.model if production else None,
        nothing_to_do=canary is None,
    )
