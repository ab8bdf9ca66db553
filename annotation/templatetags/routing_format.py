"""Filters for showing shares, intervals and the routing state on the routing page and the lead pages' banner."""
from django import template

from annotation.selection.estimates import routing_sentences as _sentences

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


@register.filter
def routing_sentences(state):
    """A project's ``routing_state`` in the sentences lead pages show (None before the first round); no query."""
    return _sentences(state or {})
