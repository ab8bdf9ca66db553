"""The project list, a new project, members and invitations, settings, labels and attribute dimensions."""
from django.urls import path

from annotation.projects import views

P = "projects/<int:project_id>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/new/", views.project_create, name="project_create"),
    path(P, views.project_detail, name="project_detail"),
    path(P + "members/", views.members, name="members"),
    path(P + "members/<int:membership_id>/", views.member_update, name="member_update"),
    path(P + "members/invitations/", views.invitation_create, name="invitation_create"),
    path(P + "members/invitations/<int:invitation_id>/withdraw/", views.invitation_revoke, name="invitation_revoke"),
    path(P + "join/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path(P + "settings/", views.project_settings, name="project_settings"),
    path(P + "labels/", views.labels, name="labels"),
    path(P + "labels/<int:label_id>/", views.label_edit, name="label_edit"),
    path(P + "labels/<int:label_id>/delete/", views.label_delete, name="label_delete"),
    path(P + "attributes/", views.attributes, name="attributes"),
    path(P + "attributes/<int:dimension_id>/", views.attribute_edit, name="attribute_edit"),
    path(P + "attributes/<int:dimension_id>/delete/", views.attribute_delete, name="attribute_delete"),
]
