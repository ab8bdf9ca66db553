"""Login throttling: failed sign-ins per account and per address, shared by every web process through the database."""
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse

from annotation.models import LoginFailure
from tests.support.factories import make_user
from tests.support.runtime import HANG_BOUND, REPO, worker_env


@pytest.fixture
def limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS = 5
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 600
    return settings


def sign_in(client, username, password, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def test_a_right_password_works(client, limits, db):
    user = make_user("alice")
    response = sign_in(client, "alice", user.raw_password)
    assert response.status_code == 302 and client.session[SESSION_KEY] == str(user.pk)


def test_the_account_is_throttled_after_the_limit_even_with_the_right_password(client, limits, db):
    user = make_user("alice")
    for _ in range(3):
        assert sign_in(client, "alice", "wrong").status_code == 200
    response = sign_in(client, "ALICE ", user.raw_password)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert SESSION_KEY not in client.session
    assert LoginFailure.objects.count() == 3  # a throttled attempt is not counted again


def test_the_throttle_ends_when_the_window_slides_past(client, limits, db):
    user = make_user("alice")
    for _ in range(3):
        sign_in(client, "alice", "wrong")
    LoginFailure.objects.update(created_at=LoginFailure.objects.first().created_at - timedelta(seconds=601))
    assert sign_in(client, "alice", user.raw_password).status_code == 302


def test_other_accounts_are_not_locked_by_someone_elses_failures(client, limits, db):
    bob = make_user("bob")
    for _ in range(3):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "bob", bob.raw_password).status_code == 302


def test_one_address_guessing_many_accounts_is_throttled(client, limits, db):
    carol = make_user("carol")
    for i in range(5):
        sign_in(client, f"someone{i}", "wrong")
    assert sign_in(client, "carol", carol.raw_password).status_code == 429
    other_address = sign_in(client, "carol", carol.raw_password, REMOTE_ADDR="10.0.0.9")
    assert other_address.status_code == 302


def test_behind_a_proxy_the_forwarded_address_counts(client, limits, db):
    limits.LOGIN_ADDRESS_HEADER = "HTTP_X_FORWARDED_FOR"
    for i in range(5):
        sign_in(client, f"someone{i}", "wrong", HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.7")
    assert set(LoginFailure.objects.values_list("address", flat=True)) == {"203.0.113.7"}
    dave = make_user("dave")
    assert sign_in(client, "dave", dave.raw_password, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 302


def test_the_admin_login_is_throttled_too(client, limits, db):
    admin = make_user("root", is_staff=True, is_superuser=True)
    for _ in range(3):
        sign_in(client, "root", "wrong")
    client.post(reverse("admin:login"), {"username": "root", "password": admin.raw_password})
    assert SESSION_KEY not in client.session


def test_failures_in_another_process_throttle_this_one(client, transactional_db):
    user = make_user("erin")
    script = ("from django.contrib.auth import authenticate\n"
              "for _ in range(5): authenticate(None, username='erin', password='wrong')\n")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=REPO, env=worker_env(),
                            capture_output=True, text=True, timeout=HANG_BOUND)
    assert result.returncode == 0, result.stderr
    assert sign_in(client, "erin", user.raw_password).status_code == 429
