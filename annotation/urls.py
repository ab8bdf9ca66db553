from django.urls import path

from annotation.views import browse, dashboard, io, projects, queue, schema

urlpatterns = [
    path("", projects.home, name="home"),
    path("accounts/login/", projects.login, name="login"),
    path("accounts/logout/", projects.logout, name="logout"),
    path("projects/new/", projects.project_create, name="project_create"),
    path("projects/<int:project_id>/", projects.project_detail, name="project_detail"),
    path("projects/<int:project_id>/members/", projects.members, name="members"),
    path("projects/<int:project_id>/members/<int:membership_id>/", projects.member_update, name="member_update"),
    path("projects/<int:project_id>/settings/", schema.project_settings, name="project_settings"),
    path("projects/<int:project_id>/labels/", schema.labels, name="labels"),
    path("projects/<int:project_id>/labels/<int:label_id>/", schema.label_edit, name="label_edit"),
    path("projects/<int:project_id>/labels/<int:label_id>/delete/", schema.label_delete, name="label_delete"),
    path("projects/<int:project_id>/attributes/", schema.attributes, name="attributes"),
    path("projects/<int:project_id>/attributes/<int:dimension_id>/", schema.attribute_edit, name="attribute_edit"),
    path("projects/<int:project_id>/attributes/<int:dimension_id>/delete/", schema.attribute_delete,
         name="attribute_delete"),
    path("projects/<int:project_id>/import/", io.import_page, name="import"),
    path("projects/<int:project_id>/import/<int:job_id>/", io.import_detail, name="import_detail"),
    path("projects/<int:project_id>/export/", io.export_page, name="export"),
    path("projects/<int:project_id>/export/download/", io.export_download, name="export_download"),
    path("projects/<int:project_id>/queue/", queue.queue_page, name="queue"),
    path("projects/<int:project_id>/queue/items/<int:item_id>/", queue.queue_review, name="queue_review"),
    path("projects/<int:project_id>/queue/undo/", queue.queue_undo, name="queue_undo"),
    path("projects/<int:project_id>/items/", browse.item_list, name="item_list"),
    path("projects/<int:project_id>/items/<int:item_id>/", browse.item_detail, name="item_detail"),
    path("projects/<int:project_id>/dashboard/", dashboard.dashboard_page, name="dashboard"),
    path("projects/<int:project_id>/dashboard/refresh/", dashboard.dashboard_refresh, name="dashboard_refresh"),
    path("projects/<int:project_id>/dashboard/evaluations/", dashboard.evaluation_create, name="evaluation_create"),
]
