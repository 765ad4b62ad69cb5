"""``{% shadow_panel dataset model %}``: the shadow evidence panel the promote page and the deployments page include
(its own template, so those pages only name it)."""

from django import template

from apps.deployments import selectors, shadow
from apps.deployments.models import Deployment

register = template.Library()


def shadow_context(dataset, model=None) -> dict:
    """The live shadow, and the evidence of ``model`` (default: the live or last shadow model) beside the live one."""
    live = selectors.live_deployment(dataset=dataset, channel=Deployment.Channel.SHADOW)
    if model is None:
        last = live or (
            Deployment.objects.filter(dataset=dataset, channel=Deployment.Channel.SHADOW)
            .select_related("model")
            .order_by("-created_at", "-id")
            .first()
        )
        model = last.model if last else None
    context = {"dataset": dataset, "live_shadow": live, "model": model, "evidence": None}
    if model is not None:
        numbers = shadow.comparison(model.pk)
        context.update(
            evidence=numbers,
            chart={"series": numbers["series"]},
            gallery=shadow.gallery(dataset, model.pk),
            field=shadow.field_scores(dataset, model.pk),
            is_live_shadow=live is not None and live.model_id == model.pk,
        )
    return context


@register.inclusion_tag("deployments/_shadow_panel.html")
def shadow_panel(dataset, model=None):
    return shadow_context(dataset, model)
