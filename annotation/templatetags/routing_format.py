"""Filters for showing shares and intervals on the routing page."""
from django import template

register = template.Library()


@register.filter
def percent(value) -> str:
    """0.9734 -> "97.3%"; None -> "n/a"."""
    if value is None or value == "":
        return "n/a"
    return f"{float(value):.1%}"


@register.filter
def interval(value) -> str:
    """(0.91, 0.97) -> "91.0% to 97.0%"."""
    if not value:
        return "n/a"
    low, high = value
    return f"{low:.1%} to {high:.1%}"
