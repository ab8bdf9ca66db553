"""Sign-in and sign-out."""
from django.urls import path

from annotation.accounts import views

urlpatterns = [
    path("accounts/login/", views.login, name="login"),
    path("accounts/logout/", views.logout, name="logout"),
]
