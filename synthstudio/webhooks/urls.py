from django.urls import path

from synthstudio.webhooks import views

urlpatterns = [
    path("projects/<int:project_id>/webhooks/", views.webhook_list, name="webhooks"),
    path("projects/<int:project_id>/webhooks/<int:webhook_id>/", views.webhook_edit, name="webhook"),
    path("projects/<int:project_id>/webhooks/<int:webhook_id>/delete/", views.webhook_delete, name="webhook_delete"),
    path("projects/<int:project_id>/webhooks/deliveries/<int:delivery_id>/", views.delivery_detail,
         name="webhook_delivery"),
    path("projects/<int:project_id>/webhooks/deliveries/<int:delivery_id>/again/", views.delivery_again,
         name="webhook_delivery_again"),
]
