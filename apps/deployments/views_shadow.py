"""Pages that start and end a shadow (ml_engineer): the evidence panel, the share and a required reason."""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render

from apps.datasets.models import Dataset
from apps.deployments import selectors
from apps.deployments.models import Deployment
from apps.deployments.services.shadow import shadow_end, shadow_start
from apps.deployments.views import ReasonForm
from apps.training.models import ModelVersion
from vectormlops.errors import DomainError
from vectormlops.permissions import ML_ENGINEER, role_required


class ShadowStartForm(ReasonForm):
    shadow_percent = forms.IntegerField(
        min_value=1,
        max_value=100,
        initial=100,
        label="Shadow share (% of robots, by serial)",
        widget=forms.NumberInput(attrs={"class": "form-control"}),
    )
    field_order = ["shadow_percent", "reason"]


@role_required(ML_ENGINEER)
def confirm_shadow_start(request, model_id):
    """Run a model in shadow beside production on a share of the fleet (robots never act on it)."""
    model = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=model_id)
    form = ShadowStartForm(request.POST or None, initial={"shadow_percent": request.GET.get("percent", 100)})
    if request.method == "POST" and form.is_valid():
        try:
            shadow_start(
                model=model,
                shadow_percent=form.cleaned_data["shadow_percent"],
                user=request.user,
                reason=form.cleaned_data["reason"],
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{model} runs in shadow on {form.cleaned_data['shadow_percent']}% of robots.")
            return redirect("deployments:dataset", slug=model.dataset.slug)
    return render(
        request,
        "deployments/shadow_confirm.html",
        {
            "title": f"Run {model} in shadow",
            "form": form,
            "dataset": model.dataset,
            "model": model,
            "production": selectors.production_model(model.dataset),
        },
    )


@role_required(ML_ENGINEER)
def confirm_shadow_end(request, slug):
    """End the live shadow (recorded in the history); robots drop the shadow model on their next poll."""
    dataset = get_object_or_404(Dataset, slug=slug)
    live = selectors.live_deployment(dataset=dataset, channel=Deployment.Channel.SHADOW)
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            shadow_end(dataset=dataset, user=request.user, reason=form.cleaned_data["reason"])
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "The shadow has ended.")
            return redirect("deployments:dataset", slug=slug)
    return render(
        request,
        "deployments/shadow_confirm.html",
        {
            "title": f"End the shadow of {dataset.slug}",
            "form": form,
            "dataset": dataset,
            "model": live.model if live else None,
            "production": selectors.production_model(dataset),
            "ending": True,
            "nothing_to_do": live is None,
        },
    )
