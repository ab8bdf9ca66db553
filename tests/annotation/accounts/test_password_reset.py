"""Password reset by e-mail through Django's own views: the link arrives by e-mail (the locmem backend in tests, the
console by default, SMTP by settings), sets a new password once, and the form tells nobody which addresses exist."""
import re

from django.conf import settings
from django.urls import reverse

from tests.support.factories import make_user

NEW_PASSWORD = "another-long-passphrase-9"


def reset_link(mailoutbox) -> str:
    assert len(mailoutbox) == 1
    found = re.search(r"http://testserver(/accounts/reset/\S+/)", mailoutbox[0].body)
    assert found, mailoutbox[0].body
    return found.group(1)


def test_a_user_resets_their_password_through_the_emailed_link(client, db, mailoutbox):
    user = make_user("forgetful", email="forgetful@example.com")
    login = client.get(reverse("login")).content.decode()
    assert reverse("password_reset") in login
    response = client.post(reverse("password_reset"), {"email": "forgetful@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mailoutbox[0].to == ["forgetful@example.com"]
    assert mailoutbox[0].subject == "Reset your synthstudio password"
    assert '"forgetful"' in mailoutbox[0].body
    link = reset_link(mailoutbox)
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    response = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_complete")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    # The link works once.
    again = client.get(link, follow=True).content.decode()
    assert "not valid" in again


def test_the_reset_form_says_the_same_for_an_unknown_address(client, db, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mailoutbox == []


def test_a_weak_new_password_is_refused(client, db, mailoutbox):
    user = make_user("forgetful", email="forgetful@example.com")
    client.post(reverse("password_reset"), {"email": "forgetful@example.com"})
    form_page = client.get(reset_link(mailoutbox), follow=True)
    set_url = form_page.redirect_chain[-1][0]
    response = client.post(set_url, {"new_password1": "12345678", "new_password2": "12345678"})
    assert response.status_code == 200 and "This password is entirely numeric." in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(user.raw_password)


def test_email_goes_to_the_console_unless_smtp_is_configured():
    # The test run swaps in the locmem backend; the settings module's own choice is what a deployment gets.
    import importlib
    import os

    import synthstudio.settings as project_settings

    assert settings.EMAIL_HOST == ""
    saved = {k: os.environ.get(k) for k in ("EMAIL_HOST", "EMAIL_BACKEND")}
    try:
        os.environ.pop("EMAIL_BACKEND", None)
        os.environ.pop("EMAIL_HOST", None)
        assert importlib.reload(project_settings).EMAIL_BACKEND == "django.core.mail.backends.console.EmailBackend"
        os.environ["EMAIL_HOST"] = "smtp.example.com"
        reloaded = importlib.reload(project_settings)
        assert reloaded.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend"
        assert reloaded.EMAIL_HOST == "smtp.example.com" and reloaded.EMAIL_USE_TLS is True
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        importlib.reload(project_settings)


def test_reset_e_mails_are_throttled_per_address_asked_for_and_never_block_a_sign_in(client, db, mailoutbox, settings):
    make_user("flooded", email="flooded@example.com")
    for _ in range(settings.PASSWORD_RESET_LIMIT + 2):
        response = client.post(reverse("password_reset"), {"email": "flooded@example.com"})
        assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert len(mailoutbox) == settings.PASSWORD_RESET_LIMIT  # the form says "sent" every time, sends no more
    # Another address from the same client still gets its e-mail, and the requests do not count as failed sign-ins.
    make_user("other", email="other@example.com")
    client.post(reverse("password_reset"), {"email": "other@example.com"})
    assert mailoutbox[-1].to == ["other@example.com"]
    assert client.login(username="flooded", password="pw-for-tests-1")


def test_reset_requests_are_throttled_per_client_address(client, db, mailoutbox, settings):
    settings.PASSWORD_RESET_LIMIT_PER_ADDRESS = 3
    for i in range(5):
        make_user(f"user{i}", email=f"user{i}@example.com")
        client.post(reverse("password_reset"), {"email": f"user{i}@example.com"})
    assert len(mailoutbox) == 3
