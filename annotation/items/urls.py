"""The lead's item browser and an item's page with its history."""
from django.urls import path

from annotation.items import views

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "items/", views.item_list, name="item_list"),
    path(P + "items/<int:item_id>/", views.item_detail, name="item_detail"),
]
