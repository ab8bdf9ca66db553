from django.contrib import admin
from django.urls import include, path

from synthstudio.api.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("annotation.urls")),
    path("", include("generation.urls")),
    path("", include("synthstudio.webhooks.urls")),
    path("", include("synthstudio.api.urls")),
    path("api/v1/", api.urls),
]
