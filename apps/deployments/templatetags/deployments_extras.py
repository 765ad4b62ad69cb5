"""Number filters of the deployments pages (a missing number shows as a dash), the colour of a difference, and the
links later apps installed for a dataset."""

from django import template

from apps.deployments import hooks

register = template.Library()
DASH = "–"

# filter name → (format spec, suffix): ``{{ x|fmt3 }}``, ``{{ x|signed3 }}``, ``{{ x|dec2 }}``, ``{{ x|pct }}``,
# ``{{ x|ms }}``.
NUMBER_FORMATS = {
    "fmt3": (".3f", ""),
    "signed3": ("+.3f", ""),
    "dec2": (".2f", ""),
    "pct": (".0%", ""),
    "ms": (".1f", " ms"),
}


def _number_filter(spec: str, suffix: str):
    def show(value):
        return DASH if value is None else f"{value:{spec}}{suffix}"

    return show


for _name, (_spec, _suffix) in NUMBER_FORMATS.items():
    register.filter(_name, _number_filter(_spec, _suffix))


@register.filter
def delta_class(value):
    if value is None:
        return ""
    return "text-success" if value > 0 else ("text-danger" if value < 0 else "")


@register.simple_tag
def dataset_links(slug, robot=None):
    """``{% dataset_links slug robot=serial as links %}``: (label, url) pairs of later apps' pages (monitoring)."""
    return hooks.dataset_links(slug, robot=robot or None)
