"""Filters the site's layout and the review queue share: which project tab a page belongs to, and Markdown-subset
text."""
from django import template
from django.utils.safestring import mark_safe

from synthstudio.lib.markdown import render_markdown

register = template.Library()

# Pages below a tab, by URL name -> the tab's URL name; every other page is its own tab.
SUB_PAGES = {
    "item_detail": "item_list",
    "import_detail": "import",
    "generation_start": "generation_jobs", "generation_job": "generation_jobs", "generation_inspect": "generation_jobs",
    "generation_connections": "generation_jobs", "generation_connection": "generation_jobs",
    "label_edit": "labels", "label_delete": "labels",
    "attribute_edit": "attributes", "attribute_delete": "attributes",
    "member_update": "members",
}


@register.filter
def nav_tab(request) -> str:
    """The URL name of the project tab the current page belongs to ("" outside a resolved URL)."""
    match = getattr(request, "resolver_match", None)
    name = match.url_name if match else ""
    return SUB_PAGES.get(name, name or "")


@register.filter
def markdown(text) -> str:
    """``text`` rendered as the safe Markdown subset of synthstudio.lib.markdown (escaped first, http(s) links only)."""
    return mark_safe(render_markdown(str(text or "")))  # render_markdown escapes all it is given before adding tags
