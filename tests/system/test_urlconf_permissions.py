"""Every URL in the URLconf, visited as lead, annotator, another project's annotator and anonymous, with GET and POST.

The expected answer comes from the view's ``access_role`` marker (annotation/permissions.py), so a new view is covered
the day it is added: a URL whose path arguments this test cannot fill fails the test instead of being skipped.
Then CSRF: every POST without a token is refused, plain or with ``HX-Request``, and accepted with one.
"""
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from annotation.models import AttributeDimension, ImportJob, Label, Membership, Role
from generation.models import GenerationJob, JobMode
from tests.support.factories import make_item

VISITORS = ("lead", "annotator", "outsider", "anonymous")
# What a visitor who may not use the view gets, by the view's access level.
DENIED = {
    "public": {},
    "user": {"anonymous": "login"},
    "member": {"anonymous": "login", "outsider": 404},
    "lead": {"anonymous": "login", "outsider": 404, "annotator": 403},
}


def _routes(resolver=None, prefix="", names=()):
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p, prefix + str(p.pattern), names)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


ROUTES = [(route, p) for route, p in _routes() if not route.startswith("admin/")]


@pytest.fixture
def world(project, lead):
    """One of everything a URL can point at, in the visited project."""
    item = make_item(project, "An item to look at")
    job = GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                       provider="offline", config={}, requested=1)
    import_job = ImportJob.objects.create(project=project, created_by=lead, file_name="x.csv", format="csv")
    return {
        "project_id": project.id,
        "item_id": item.id,
        "membership_id": Membership.objects.get(project=project, role=Role.ANNOTATOR).id,
        "label_id": Label.objects.filter(project=project).first().id,
        "dimension_id": AttributeDimension.objects.create(project=project, name="topic", values=["a", "b"]).id,
        # The same converter name means a different model in each app.
        ("job_id", "generation"): job.id,
        ("job_id", "annotation"): import_job.id,
    }


def fill(route: str, pattern: URLPattern, world: dict) -> str:
    kwargs = {}
    app = pattern.callback.__module__.split(".")[0]
    for name in pattern.pattern.converters:
        value = world.get((name, app), world.get(name))
        if value is None:
            pytest.fail(f"{route}: the test cannot fill <{name}>; add it to the world fixture")
        kwargs[name] = value
    return reverse(pattern.name, kwargs=kwargs) if pattern.name else pytest.fail(f"{route} has no URL name")


def client_as(request, who, **options) -> Client:
    client = Client(**options)
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    return client


def check(response, *, denied, method: str, post_only: bool) -> str | None:
    """None if the response is what the visitor should get, else a description of what went wrong."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}"
    if method == "get" and post_only and status == 405:
        return None  # refused for its method before anyone is looked at: nothing leaks, nothing runs
    if denied is None:
        return None if status not in (403, 404) else f"allowed visitor got {status}"
    if denied == "login":
        location = response.get("Location", "")
        ok = status == 302 and location.startswith(reverse("login"))
        return None if ok else f"expected a redirect to login, got {status} {location}"
    return None if status == denied else f"expected {denied}, got {status}"


def test_the_urlconf_has_project_views_to_check():
    roles = {getattr(p.callback, "access_role", None) for _, p in ROUTES}
    assert {"public", "user", "member", "lead"} <= roles
    assert len(ROUTES) >= 30


@pytest.mark.parametrize("route,pattern", ROUTES, ids=[r for r, _ in ROUTES])
def test_every_url_answers_each_visitor_as_its_access_level_says(request, world, route, pattern):
    role = getattr(pattern.callback, "access_role", None)
    assert role in DENIED, f"{route} does not declare its access level"
    url = fill(route, pattern, world)
    post_only = client_as(request, "lead").get(url).status_code == 405
    problems = []
    for method in ("get", "post"):
        for who in VISITORS:
            response = getattr(client_as(request, who), method)(url)
            problem = check(response, denied=DENIED[role].get(who), method=method, post_only=post_only)
            if problem:
                problems.append(f"{method.upper()} as {who}: {problem}")
    assert problems == [], f"{route} ({role})"


def test_admin_pages_need_a_staff_account(request):
    for who in ("anonymous", "annotator"):
        response = client_as(request, who).get(reverse("admin:index"))
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("route,pattern", ROUTES, ids=[r for r, _ in ROUTES])
def test_every_post_needs_a_csrf_token(request, world, route, pattern):
    url = fill(route, pattern, world)
    who = "anonymous" if pattern.callback.access_role == "public" else "lead"
    client = client_as(request, who, enforce_csrf_checks=True)
    assert client.post(url).status_code == 403
    assert client.post(url, headers={"HX-Request": "true"}).status_code == 403
    client.get(reverse("login" if who == "anonymous" else "home"))  # sets the csrftoken cookie, as any page does
    token = client.cookies["csrftoken"].value
    accepted = client.post(url, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert accepted.status_code not in (403, 404) and accepted.status_code < 500
