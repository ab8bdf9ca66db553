"""The Celery application. Tasks live in ``tasks.py`` modules beside the code they call; every such module inside our
own apps is found by walking the apps' folders, so a new capability package needs no list to be kept here."""
import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synthstudio.settings")

REPO = Path(__file__).resolve().parent.parent


def task_packages() -> list[str]:
    """Dotted names of the packages of our installed apps that hold a ``tasks.py`` (e.g. ``annotation.queue``)."""
    from django.apps import apps

    packages = []
    for config in apps.get_app_configs():
        root = Path(config.path)
        if REPO not in root.parents:
            continue  # Django's and third-party apps
        for module in sorted(root.rglob("tasks.py")):
            packages.append(".".join([config.name, *module.parent.relative_to(root).parts]))
    return packages


app = Celery("synthstudio", include=["synthstudio.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(task_packages)
