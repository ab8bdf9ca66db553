"""Every URL in the URLconf, visited as lead, annotator, another project's annotator and anonymous, with GET and POST,
and as a superuser (who acts as a lead) with GET.

The expected answer comes from the view's ``access_role`` marker (annotation/permissions.py), so a new view is covered
the day it is added: a URL whose path arguments this test cannot fill fails the test instead of being skipped. What
the markers must say is pinned once, below: only a few views are open beyond a project's leads. A refused request
writes nothing, even when it carries what a real attempt would; objects of another project are not found through this
one. Then CSRF: every POST without a token is refused, plain or with ``HX-Request``, and accepted with one.
"""
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import Project, Role
from tests.support.factories import make_world
from tests.support.visits import ROUTES, VISITORS, fill, project_rows

# What a visitor who may not use the view gets, by the view's access level. A superuser acts as a lead everywhere.
DENIED = {
    "public": {},
    "user": {"anonymous": "login"},
    "member": {"anonymous": "login", "outsider": 404},
    "lead": {"anonymous": "login", "outsider": 404, "annotator": 403},
}

# The views open to more than a project's leads, by URL name and access level; every other view is for leads only. A
# view opened to annotators by mistake, or a new view that is not lead-only, fails here until it is listed.
OPEN_BEYOND_LEADS = {
    "login": "public",
    "invitation_accept": "public", "password_reset": "public", "password_reset_done": "public",
    "password_reset_confirm": "public", "password_reset_complete": "public",
    "logout": "user", "home": "user", "project_create": "user",
    "project_detail": "member", "queue": "member", "queue_review": "member", "queue_undo": "member",
    "api_tokens": "user", "api_token_revoke": "user",
}

# What a real attempt carries (a review of the world's item at its version, a role change, a pause decision, a new
# name): a view that acted before checking access would write something with it.
ATTEMPT = {"action": "accept", "version": "1", "labels": "positive", "role": Role.LEAD, "identifier": "outsider",
           "decision": "keep", "name": "taken over"}
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")


def client_as(request, who, **options) -> Client:
    client = Client(**options)
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    return client


def send(client, method, url, data=None):
    """The response, and the SQL statements the request wrote."""
    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)(url, data)
    return response, [q["sql"] for q in queries if q["sql"].lstrip().split(None, 1)[0].upper() in WRITES]


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


def test_only_the_listed_views_are_open_beyond_a_projects_leads():
    declared = {p.name: getattr(p.callback, "access_role", None) for _, p in ROUTES}
    assert {name: role for name, role in declared.items() if role != "lead"} == OPEN_BEYOND_LEADS


@pytest.mark.parametrize("route,pattern", ROUTES, ids=[r for r, _ in ROUTES])
def test_every_url_answers_each_visitor_as_its_access_level_says(request, world, route, pattern):
    role = getattr(pattern.callback, "access_role", None)
    assert role in DENIED, f"{route} does not declare its access level"
    url = fill(route, pattern, world)
    post_only = client_as(request, "lead").get(url).status_code == 405
    problems = []
    for method in ("get", "post"):
        # The superuser only reads: a lead's POST may already have deleted the object (a label, a dimension).
        for who in (*VISITORS, "superuser") if method == "get" else VISITORS:
            denied = DENIED[role].get(who)
            data = ATTEMPT if denied and method == "post" else None
            response, writes = send(client_as(request, who), method, url, data)
            problem = check(response, denied=denied, method=method, post_only=post_only)
            if problem is None and denied and writes:
                problem = f"refused, but wrote {writes}"
            if who == "lead":
                as_lead = response.status_code
            elif who == "superuser" and problem is None and response.status_code != as_lead:
                problem = f"a superuser acts as a lead, but got {response.status_code} where the lead got {as_lead}"
            if problem:
                problems.append(f"{method.upper()} as {who}: {problem}")
    assert problems == [], f"{route} ({role})"


# Routes to an object of a project (a password reset link names an account, not a project object).
OBJECT_ROUTES = [(route, p) for route, p in ROUTES
                 if "project_id" in p.pattern.converters and set(p.pattern.converters) - {"project_id"}]


@pytest.mark.parametrize("route,pattern", OBJECT_ROUTES, ids=[r for r, _ in OBJECT_ROUTES])
def test_objects_of_another_project_are_not_found_through_this_one(request, world, route, pattern):
    other = Project.objects.get(name="Other")
    foreign = {**make_world(project=other, lead=other.memberships.get(role=Role.LEAD).user),
               "project_id": world["project_id"]}
    url = fill(route, pattern, foreign)
    before = project_rows(other)
    client = client_as(request, "lead")
    assert client.get(url).status_code in (404, 405)
    # The review queue, the one member-level view of an object, answers an item it cannot review for you with your
    # next item, as it does for a stale one.
    refusals = (404, 302) if pattern.callback.access_role == "member" else (404,)
    assert client.post(url, ATTEMPT).status_code in refusals
    assert project_rows(other) == before


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
