"""Sign-in (throttled against password guessing), sign-out, and password reset by e-mail through Django's own views
(templates in templates/registration/; the e-mail goes through settings.EMAIL_BACKEND: the console unless SMTP is
configured). The reset form answers the same whether or not an account has the address, so it tells nobody which
addresses have accounts, and it is throttled like sign-ins (annotation/accounts/throttle.py)."""
from django.contrib.auth import views as auth_views

from annotation.accounts.throttle import ThrottledLoginView, ThrottledPasswordResetView
from annotation.permissions import public_view, user_view

login = public_view(ThrottledLoginView.as_view())
logout = user_view(auth_views.LogoutView.as_view())
password_reset = public_view(ThrottledPasswordResetView.as_view())
password_reset_done = public_view(auth_views.PasswordResetDoneView.as_view())
password_reset_confirm = public_view(auth_views.PasswordResetConfirmView.as_view())
password_reset_complete = public_view(auth_views.PasswordResetCompleteView.as_view())
