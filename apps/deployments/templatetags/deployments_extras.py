from django import template

register = template.Library()


@register.filter
def fmt3(value):
    return "–" if value is None else f"{value:.3f}"


@register.filter
def signed3(value):
    return "–" if value is None else f"{value:+.3f}"


@register.filter
def delta_class(value):
    if value is None:
        return ""
    return "text-success" if value > 0 else ("text-danger" if value < 0 else "")
