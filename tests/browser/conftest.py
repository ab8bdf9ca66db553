"""Real Chromium (Debian's, never a downloaded one) driven by Playwright against pytest-django's live server."""
import os
from pathlib import Path

import pytest

from tests.support.runtime import require

# Playwright's sync API runs an event loop in this thread; Django refuses database calls next to a running loop
# unless told that this (test) process knows what it is doing.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    require(os.path.exists(CHROMIUM), "Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def csp_violations():
    """What Chromium refused under the Content-Security-Policy, as it reports it on the console, across every page
    ``new_page`` opens in the test; a test that ends with one fails (test_csp_browser.py tests the reporting)."""
    found = []
    yield found
    assert found == [], "Content-Security-Policy violations"


@pytest.fixture
def new_page(browser, live_server, csp_violations):
    """new_page(user, **context options) -> a page logged in as user, in a browser context of its own."""
    contexts = []

    def open_page(user, **options):
        context = browser.new_context(viewport=options.pop("viewport", {"width": 1280, "height": 800}), **options)
        context.set_default_timeout(10_000)
        # Page loads wait longer than element checks: on a busy 2-core CI machine the first load can be slow.
        context.set_default_navigation_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: csp_violations.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", user.raw_password)
        page.press("#id_password", "Enter")
        page.wait_for_url(f"{live_server.url}/")
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot():
    def save(page, name):
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
