"""The Content-Security-Policy in a real browser: Chromium enforces it and reports what it refuses, and every page of
the app opens without a violation (the ``csp_violations`` fixture fails any browser test that causes one)."""
import pytest
from django.test import Client

from tests.support.visits import ROUTES, fill

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_chromium_refuses_inline_script_and_style_and_reports_it(lead, project, new_page, live_server, csp_violations):
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/")
    with (page.expect_console_message(lambda message: "inline script" in message.text) as script_report,
          page.expect_console_message(lambda message: "inline style" in message.text) as style_report):
        page.evaluate("""() => {
            const script = document.createElement("script");
            script.textContent = "window.__ran = 1";
            document.body.appendChild(script);
            document.querySelector("h1").setAttribute("style", "color: rgb(255, 0, 0)");
        }""")
    assert page.evaluate("window.__ran ?? null") is None
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).color") != "rgb(255, 0, 0)"
    assert all("Content Security Policy" in report.value.text for report in (script_report, style_report))
    csp_violations.clear()  # expected here; any other test fails on one


def test_every_page_opens_without_a_violation(world, lead, new_page, live_server, csp_violations):
    """Every route a lead can open as a page (not POST-only, not a download), with its htmx loaded and polling."""
    client = Client()
    client.force_login(lead)
    urls = []
    for route, pattern in ROUTES:
        url = fill(route, pattern, world)
        response = client.get(url)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            urls.append(url)
    assert len(urls) >= 15, urls
    page = new_page(lead)
    for url in urls:
        page.goto(f"{live_server.url}{url}")  # returns after the load event: deferred scripts (htmx) have run
        assert page.evaluate("typeof window.htmx") == "object", url
        assert csp_violations == [], url
