from django.urls import path

from annotation.views import projects

urlpatterns = [
    path("", projects.home, name="home"),
    path("accounts/login/", projects.login, name="login"),
    path("accounts/logout/", projects.logout, name="logout"),
    path("projects/new/", projects.project_create, name="project_create"),
    path("projects/<int:project_id>/", projects.project_detail, name="project_detail"),
    path("projects/<int:project_id>/members/", projects.members, name="members"),
    path("projects/<int:project_id>/members/<int:membership_id>/", projects.member_update, name="member_update"),
]
