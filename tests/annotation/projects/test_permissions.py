"""The permission matrix for the foundation's views, and a guard that every URL declares its access level."""
import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from annotation.models import Membership, Role

VISITORS = ["lead", "annotator", "outsider", "anonymous"]


def visitor_client(request, client, who):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    return client


def all_patterns(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            yield from all_patterns(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def test_every_view_declares_its_access_level():
    missing = [
        route for route, p in all_patterns()
        if not route.startswith("admin/") and not hasattr(p.callback, "access_role")
    ]
    assert missing == []


# (url name, method, expected status for lead, annotator, outsider, anonymous)
MATRIX = [
    ("home", "get", {"lead": 200, "annotator": 200, "outsider": 200, "anonymous": 302}),
    ("project_create", "get", {"lead": 200, "annotator": 200, "outsider": 200, "anonymous": 302}),
    ("project_detail", "get", {"lead": 200, "annotator": 200, "outsider": 404, "anonymous": 302}),
    ("members", "get", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("members", "post", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("member_update", "post", {"lead": 302, "annotator": 403, "outsider": 404, "anonymous": 302}),
]


def url_for(name, project):
    if name in ("home", "project_create"):
        return reverse(name)
    if name == "member_update":
        m = Membership.objects.get(project=project, role=Role.ANNOTATOR)
        return reverse(name, args=[project.id, m.id])
    return reverse(name, args=[project.id])


@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("name,method,expected", MATRIX, ids=[f"{m[0]}-{m[1]}" for m in MATRIX])
def test_permission_matrix(request, client, project, who, name, method, expected):
    c = visitor_client(request, client, who)
    url = url_for(name, project)
    data = {"identifier": "nobody-here", "role": "annotator"} if method == "post" else None
    response = getattr(c, method)(url, data)
    assert response.status_code == expected[who]
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login"))


def test_home_lists_only_my_projects(client, project, outsider):
    client.force_login(outsider)
    body = client.get(reverse("home")).content.decode()
    assert "Other" in body
    assert "Sentiment" not in body


def test_superuser_acts_as_lead(client, project, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    assert client.get(reverse("members", args=[project.id])).status_code == 200
