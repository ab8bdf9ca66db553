"""The routing page: policy, rounds, estimates, the pause decision, score now."""
from django.urls import path

from annotation.selection import views

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "routing/", views.routing_page, name="routing"),
    path(P + "routing/decide/", views.routing_decide, name="routing_decide"),
    path(P + "routing/score/", views.routing_score, name="routing_score"),
]
