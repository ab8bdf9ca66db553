"""The site's frame (issue 18): grouped project tabs with the current page marked, only the annotator's own pages for
an annotator, designed 403 / 404 / 500 pages in the site's layout, and the favicon."""
import re

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from tests.support.factories import make_item

LEAD_TABS = ["Overview", "Review queue", "Items", "Import", "Generation", "Export", "Dashboard", "Routing", "Labels",
             "Attributes", "Members", "Settings"]


def tabs(body: str) -> list[str]:
    nav = body[body.index('<nav class="tabs"'):body.index("</nav>", body.index('<nav class="tabs"'))]
    return re.findall(r"<a [^>]*>([^<]+)</a>", nav)


def current(body: str) -> list[str]:
    return re.findall(r'<a [^>]*aria-current="page"[^>]*>([^<]+)</a>', body)


def test_a_lead_sees_every_tab_in_four_groups_with_the_current_page_marked(client, lead, project, world):
    client.force_login(lead)
    body = client.get(reverse("labels", args=[project.id])).content.decode()
    assert [name for name in tabs(body) if name in LEAD_TABS] == LEAD_TABS  # others add theirs (Webhooks)
    assert re.findall(r'<ul class="tab-group" aria-label="([^"]+)"', body) == ["Review", "Data", "Quality", "Setup"]
    assert current(body) == ["Labels"]


@pytest.mark.parametrize("page, args, tab", [
    ("item_detail", ["item_id"], "Items"), ("generation_job", [("job_id", "generation")], "Generation"),
    ("import_detail", [("job_id", "annotation")], "Import"), ("label_edit", ["label_id"], "Labels"),
    ("queue", [], "Review queue"),
])
def test_a_page_below_a_tab_marks_that_tab(client, lead, project, world, page, args, tab):
    client.force_login(lead)
    url = reverse(page, args=[project.id, *(world[arg] for arg in args)])
    assert current(client.get(url).content.decode()) == [tab]


def test_an_annotator_sees_only_the_pages_open_to_them(client, annotator, project):
    make_item(project, "an item")
    client.force_login(annotator)
    for name in ("project_detail", "queue"):
        body = client.get(reverse(name, args=[project.id])).content.decode()
        assert tabs(body) == ["Overview", "Review queue"]
        assert "tab-group-name" not in body


def test_an_annotator_on_a_lead_page_gets_the_designed_403_page(client, annotator, project):
    client.force_login(annotator)
    response = client.get(reverse("dashboard", args=[project.id]))
    body = response.content.decode()
    assert response.status_code == 403
    assert '<header class="topbar">' in body and "favicon.svg" in body and annotator.username in body
    assert "You cannot open this page" in body and "Only a project lead can do this." in body
    assert f'href="{reverse("home")}"' in body


def test_an_unknown_page_gets_the_designed_404_page_without_saying_why(client, annotator, project, settings):
    settings.DEBUG = False
    client.force_login(annotator)
    for url in ("/no/such/page/", reverse("queue", args=[project.id + 1000])):
        response = client.get(url)
        body = response.content.decode()
        assert response.status_code == 404
        assert '<header class="topbar">' in body and "This page does not exist" in body
        assert "No such project" not in body


def test_the_500_page_renders_without_the_database_or_a_user():
    """No ``db`` fixture: any query would raise."""
    response = server_error(RequestFactory().get("/anything/"))
    body = response.content.decode()
    assert response.status_code == 500
    assert '<header class="topbar">' in body and "Something went wrong on our side" in body
    assert "Log out" not in body


def test_the_favicon_is_a_static_file_every_page_links():
    assert finders.find("favicon.svg")
    base = (settings.BASE_DIR / "templates" / "base.html").read_text()
    assert '<link rel="icon" href="{% static \'favicon.svg\' %}" type="image/svg+xml">' in base
