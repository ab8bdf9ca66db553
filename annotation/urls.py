"""The annotation app's pages: each capability package brings its own URLs (URL names are global, as templates use them)."""
from django.urls import include, path

urlpatterns = [
    path("", include(f"annotation.{package}.urls"))
    for package in ("accounts", "projects", "io", "queue", "items", "dashboard", "selection")
]
