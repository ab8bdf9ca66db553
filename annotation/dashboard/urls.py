"""The dashboard, its refresh, and train-on-synthetic evaluations."""
from django.urls import path

from annotation.dashboard import views

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "dashboard/", views.dashboard_page, name="dashboard"),
    path(P + "dashboard/refresh/", views.dashboard_refresh, name="dashboard_refresh"),
    path(P + "dashboard/evaluations/", views.evaluation_create, name="evaluation_create"),
]
