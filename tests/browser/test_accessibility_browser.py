"""axe-core (tests/browser/vendor/axe.min.js, see its README) on every page of the site, as a lead and as an annotator,
in light and dark mode (the queue also on a phone): no serious or critical violation.

Every GET route of the URLconf is visited with its path arguments filled from one world of objects
(tests/support/visits.py), so a new page is checked the day it is added; a route that answers with something other
than an HTML page (a download, JSON, a redirect to a form's POST target) is skipped. axe runs inside the page through
Playwright's evaluate, which the page's Content-Security-Policy allows (it refuses only the page's own inline code).
"""
from pathlib import Path

import pytest

from annotation.models import Item, Label
from tests.support.factories import make_item
from tests.support.visits import ROUTES, fill

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
BLOCKING = ("serious", "critical")
RUN_AXE = """() => axe.run(document, {resultTypes: ["violations"]}).then(result => result.violations
    .filter(v => ["serious", "critical"].includes(v.impact))
    .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 4).map(n => n.target.join(" "))})))"""


def violations(page) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    return page.evaluate(RUN_AXE)


def html_pages(page, live_server, world) -> list[str]:
    """The path of every route that answers a GET with an HTML page for this visitor (200, 403 or 404)."""
    paths = []
    for route, pattern in ROUTES:
        if route.startswith("api/") or route in ("accounts/logout/",):
            continue
        path = fill(route, pattern, world)
        response = page.request.get(f"{live_server.url}{path}", max_redirects=0)
        if response.status in (200, 403, 404) and response.headers.get("content-type", "").startswith("text/html"):
            paths.append(path)
    return paths


@pytest.fixture
def busy_world(project, world):
    """The world, with an item in the queue that shows every part of the queue page (why, details, provenance)."""
    Label.objects.filter(project=project, name="positive").update(description="Praise, *even faint*.")
    project.guidelines = "**Be strict.**\n- one rule\n- [a link](https://example.com/)"
    project.save(update_fields=["guidelines"])
    Item.objects.filter(pk=world["item_id"]).update(model_label="negative", llm_confidence=0.4,
                                                    model_scores={"p_llm_wrong": 0.6, "entropy": 0.9},
                                                    route_reason="to review: model and LLM disagree",
                                                    provenance={"job": 1, "model": "offline"})
    make_item(project, "a second item", proposed=())
    return world


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("who", ["lead", "annotator"])
def test_every_page_has_no_serious_or_critical_accessibility_violation(request, who, scheme, busy_world, new_page,
                                                                       live_server):
    user = request.getfixturevalue(who)
    page = new_page(user, color_scheme=scheme)
    paths = html_pages(page, live_server, busy_world)
    assert len(paths) >= (20 if who == "lead" else 5)
    found = {}
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("load")
        if problems := violations(page):
            found[path] = problems
    assert found == {}, "\n".join(f"{path}: {v['impact']} {v['id']} ({v['help']}) at {v['nodes']}"
                                   for path, problems in found.items() for v in problems)


def test_the_queue_in_dark_mode_and_on_a_phone_has_no_serious_or_critical_violation(busy_world, annotator, project,
                                                                                      new_page, live_server):
    for options in ({"color_scheme": "dark"}, {"viewport": {"width": 390, "height": 844}},
                    {"color_scheme": "dark", "viewport": {"width": 390, "height": 844}}):
        page = new_page(annotator, **options)
        page.goto(f"{live_server.url}/projects/{project.id}/queue/")
        page.wait_for_selector("#queue-item:focus")
        assert violations(page) == []
        # With the edit and reject panels open, the "why" details open and a message shown.
        page.keyboard.press("e")
        page.keyboard.press("Escape")
        page.click(".why details summary")
        page.click("#reject-panel summary")
        page.click("#guidelines-toggle")
        assert violations(page) == []
