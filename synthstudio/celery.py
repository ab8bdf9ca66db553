"""The Celery application; tasks live in each app's ``tasks.py``."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synthstudio.settings")

# annotation.tasks is found by autodiscover_tasks(); other task modules are listed here.
app = Celery("synthstudio", include=["synthstudio.tasks", "annotation.io_tasks", "annotation.dashboard_tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
