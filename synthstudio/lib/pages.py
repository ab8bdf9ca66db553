"""Rendering a project page, so that a view passes only what is particular to it.

Every project page needs ``access`` (the viewer's role, for the tabs) and ``project``; a page that htmx updates in
place answers an htmx request with the fragment the full page includes (STYLE.md: the same markup either way).
"""
from django.shortcuts import render


def render_page(request, access, template: str, *, partial: str | None = None, status: int = 200, **context):
    """``template`` with ``access``, ``project`` and ``context``; ``partial`` instead when htmx asks."""
    name = partial if partial is not None and request.htmx else template
    return render(request, name, {"access": access, "project": access.project, **context}, status=status)
