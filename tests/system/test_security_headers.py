"""Production fails closed, and every page carries a Content-Security-Policy that its own markup obeys.

DEBUG is off unless set (the tests and `manage.py dev` turn it on), and then the app refuses to start without a real
SECRET_KEY. Every route of the URLconf is visited as a lead, plain and with ``HX-Request``: each answer carries the
policy, and no page or fragment has an inline script, style or event handler the policy would refuse. Whether the
browser enforces it is tested in tests/browser/test_csp_browser.py.
"""
import os
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from synthstudio.csp import csp_header
from tests.support.runtime import REPO
from tests.support.visits import ROUTES, fill

POLICY = csp_header(settings.SECURE_CSP)
GOOD_KEY = "x" * 20 + "-a-long-random-production-secret-key-0123456789"


class InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' and 'unsafe-eval' refuses, or what htmx would eval."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        # A JSON data block (type="application/json") is never run; the policy does not apply to it.
        if tag == "script" and not attrs.get("src") and attrs.get("type") != "application/json":
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs.items():
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
            elif name.startswith("on") or name.startswith(("hx-on", "data-hx-on")):
                self.found.append(f"event handler attribute {name} on <{tag}>")
            elif name in ("hx-vals", "hx-headers", "hx-vars") and (value or "").lstrip().startswith(("js:",
                                                                                                    "javascript:")):
                self.found.append(f"evaluated {name} on <{tag}>")
            elif name in ("href", "action", "formaction") and (value or "").lstrip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL in {name} on <{tag}>")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_the_policy_allows_nothing_inline_no_eval_and_no_other_origin():
    policy = settings.SECURE_CSP
    for directive in ("default-src", "script-src", "style-src"):
        assert policy[directive] == ["'self'"], directive
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["form-action"] == ["'self'"]
    assert POLICY.startswith("default-src 'self'; script-src 'self'; style-src 'self'; ")


def test_the_checker_finds_what_the_policy_refuses():
    html = ('<script>x()</script><style>p{}</style><p style="color:red" onclick="x()">'
            '<button hx-on:click="x()"></button><div hx-vals="js:{a: x()}"></div><a href="javascript:x()">')
    assert len(inline_code(html)) == 7
    assert inline_code('<script src="/static/a.js" defer></script><p class="a" hx-get="/x/">') == []


@pytest.mark.parametrize("route,pattern", ROUTES, ids=[r for r, _ in ROUTES])
def test_every_page_and_fragment_carries_the_policy_and_obeys_it(request, world, lead, route, pattern):
    url = fill(route, pattern, world)
    who = None if pattern.callback.access_role == "public" else lead
    for headers in ({}, {"HX-Request": "true"}):
        client = Client()
        if who is not None:
            client.force_login(who)
        response = client.get(url, headers=headers)
        assert response.status_code < 500, (url, headers)
        assert response["Content-Security-Policy"] == POLICY, (url, headers)
        if response.get("Content-Type", "").startswith("text/html") and not response.streaming:
            assert inline_code(response.content.decode()) == [], (url, headers)


@pytest.mark.parametrize("who", ["anonymous", "annotator", "outsider"])
def test_redirects_refusals_and_not_found_carry_the_policy(request, world, who):
    client = Client()
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    for url in (reverse("dashboard", args=[world["project_id"]]), "/no-such-page/"):
        response = client.get(url)
        assert response.status_code in (302, 403, 404)
        assert response["Content-Security-Policy"] == POLICY, (who, url, response.status_code)


def test_the_admin_carries_the_policy(admin_client):
    assert admin_client.get(reverse("admin:index"))["Content-Security-Policy"] == POLICY


def test_djangos_own_debug_pages_are_left_without_it_in_development(client, settings):
    """With DEBUG on, a 404 is Django's technical page, whose inline styles and scripts the policy would break."""
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/no-such-page/")
    assert client.get(reverse("login"))["Content-Security-Policy"] == POLICY


def test_no_template_has_inline_script_style_or_handlers():
    """Fragments a GET does not render (error branches, POST answers) are checked at the source."""
    problems = {}
    for path in sorted((REPO / "templates").rglob("*.html")):
        found = inline_code(path.read_text())
        if found:
            problems[str(path.relative_to(REPO))] = found
    assert problems == {}


def settings_env(tmp_path, **variables) -> dict:
    """An environment with none of the suite's settings choices: the project's own settings module, DEBUG unset."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    return {**env, "DJANGO_SETTINGS_MODULE": "synthstudio.settings", "SYNTHSTUDIO_VAR_DIR": str(tmp_path), **variables}


def manage(*args, env):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


SHOW = ("from django.conf import settings as s; "
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)")


def test_debug_is_off_unless_set_with_secure_cookies_and_https(tmp_path):
    result = manage("shell", "-c", SHOW, env=settings_env(tmp_path, SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="example.com"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["False", "True", "True", "True", "31536000"]


def test_without_debug_or_a_secret_key_the_app_refuses_to_start(tmp_path):
    result = manage("check", env=settings_env(tmp_path, ALLOWED_HOSTS="example.com"))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr and "DEBUG=true" in result.stderr


@pytest.mark.parametrize("key", ["x" * 64, "django-insecure-" + "abcdefghij" * 5,
                                 "dev-only-insecure-key-do-not-use-in-production"],
                         ids=["one-repeated-character", "startproject-insecure-key", "the-development-key"])
def test_a_guessable_secret_key_is_refused_in_production(tmp_path, key):
    result = manage("check", env=settings_env(tmp_path, DEBUG="false", SECRET_KEY=key, ALLOWED_HOSTS="example.com"))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_manage_py_dev_turns_debug_on_by_itself(tmp_path):
    """The README's run command needs no variable: `dev` is found and loads with the development key."""
    result = manage("dev", "--help", env=settings_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Migrate, create the demo project" in result.stdout


def test_manage_py_dev_refuses_to_run_with_debug_off(tmp_path):
    env = settings_env(tmp_path, DEBUG="false", SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="example.com")
    result = manage("dev", "--no-demo", env=env)
    assert result.returncode != 0
    assert "needs DEBUG on" in result.stderr
    assert not (tmp_path / "db.sqlite3").exists()  # refused before migrating anything
