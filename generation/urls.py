from django.urls import path

from generation import views

urlpatterns = [
    path("projects/<int:project_id>/generation/", views.job_list, name="generation_jobs"),
    path("projects/<int:project_id>/generation/new/", views.job_start, name="generation_start"),
    path("projects/<int:project_id>/generation/preview/", views.job_preview, name="generation_preview"),
    path("projects/<int:project_id>/generation/<int:job_id>/", views.job_detail, name="generation_job"),
    path("projects/<int:project_id>/generation/<int:job_id>/cancel/", views.job_cancel, name="generation_cancel"),
    path("projects/<int:project_id>/generation/<int:job_id>/inspect/", views.job_inspect,
         name="generation_inspect"),
    path("projects/<int:project_id>/generation/connections/", views.connection_list, name="generation_connections"),
    path("projects/<int:project_id>/generation/connections/test/", views.connection_test,
         name="generation_connection_test"),
    path("projects/<int:project_id>/generation/connections/<int:connection_id>/", views.connection_edit,
         name="generation_connection"),
    path("projects/<int:project_id>/generation/connections/<int:connection_id>/delete/", views.connection_delete,
         name="generation_connection_delete"),
]
