"""Sign-in (throttled against password guessing) and sign-out."""
from django.contrib.auth import views as auth_views

from annotation.accounts.throttle import ThrottledLoginView
from annotation.permissions import public_view, user_view

login = public_view(ThrottledLoginView.as_view())
logout = user_view(auth_views.LogoutView.as_view())
