"""Import and export pages and downloads."""
from django.urls import path

from annotation.io import views

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "import/", views.import_page, name="import"),
    path(P + "import/<int:job_id>/", views.import_detail, name="import_detail"),
    path(P + "export/", views.export_page, name="export"),
    path(P + "export/download/", views.export_download, name="export_download"),
    path(P + "export/reviews/", views.audit_log_download, name="audit_log_download"),
]
