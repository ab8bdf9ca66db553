from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "synthstudio.api"
    label = "api"
    verbose_name = "API"
