"""Visiting pages as each kind of visitor: the four visitors, every route of the URLconf, and filling a route's path
arguments from a world of objects (tests/support/factories.py: make_world)."""
import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from annotation.models import AttributeDimension, ImportJob, Item, Label, Membership, Review
from generation.models import GenerationJob

# Fixture names: a lead and an annotator of the visited project, an annotator of another project, nobody signed in.
VISITORS = ("lead", "annotator", "outsider", "anonymous")


def visitor_client(request, client, who):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    return client


def _routes(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


# (route, URLPattern) of every URL of ours; the admin's are Django's and are checked on their own, the API's
# operations by their own table (tests/api/test_api_permissions.py).
ROUTES = [(route, p) for route, p in _routes() if not route.startswith(("admin/", "api/v1/"))]


def fill(route: str, pattern: URLPattern, world: dict) -> str:
    """The URL of ``route`` with its path arguments taken from ``world``; fails on an argument it cannot fill."""
    kwargs = {}
    app = pattern.callback.__module__.split(".")[0]
    for name in pattern.pattern.converters:
        value = world.get((name, app), world.get(name))
        if value is None:
            pytest.fail(f"{route}: the test cannot fill <{name}>; add it to make_world (tests/support/factories.py)")
        kwargs[name] = value
    return reverse(pattern.name, kwargs=kwargs) if pattern.name else pytest.fail(f"{route} has no URL name")


def project_rows(project) -> list:
    """Everything of ``project`` a request could change, as plain values."""
    return [
        list(Item.objects.filter(project=project).order_by("id").values_list("id", "version", "status", "claimed_by")),
        Review.objects.filter(item__project=project).count(),
        list(Membership.objects.filter(project=project).order_by("id").values_list("id", "user", "role")),
        list(Label.objects.filter(project=project).order_by("id").values_list("id", "name")),
        list(AttributeDimension.objects.filter(project=project).order_by("id").values_list("id", "name", "values")),
        list(GenerationJob.objects.filter(project=project).order_by("id").values_list("id", "status")),
        list(ImportJob.objects.filter(project=project).order_by("id").values_list("id", "state")),
    ]
