"""The account page for personal API tokens (the API itself is mounted in synthstudio/urls.py)."""
from django.urls import path

from synthstudio.api import views

urlpatterns = [
    path("accounts/tokens/", views.token_list, name="api_tokens"),
    path("accounts/tokens/revoke/", views.token_revoke, name="api_token_revoke"),
]
