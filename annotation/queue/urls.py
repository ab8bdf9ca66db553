"""The review queue page and its actions."""
from django.urls import path

from annotation.queue import views

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "queue/", views.queue_page, name="queue"),
    path(P + "queue/items/<int:item_id>/", views.queue_review, name="queue_review"),
    path(P + "queue/undo/", views.queue_undo, name="queue_undo"),
]
