"""The Celery application. Tasks live in ``tasks.py`` modules beside the code they call; every such module inside our
own apps is found by walking the apps' folders, so a new capability package needs no list to be kept here."""
import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_init

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


def worker_priority_lower() -> int:
    """Raise this process's niceness to ``WORKER_NICENESS`` (never lower it); returns the niceness it has now.

    A worker sharing a machine with the web server (the embedded runtime, a small deployment) competes with it for the
    CPU: with a scoring round running beside 16 annotators on a busy 2-core machine, submit p99 was 254 ms with the
    worker at the web server's priority and 95 ms at a niceness of 10, the round taking no longer (bench/RESULTS.md,
    "Tail under contention"). On a machine of its own a worker loses nothing: niceness matters only when processes
    compete.
    """
    from django.conf import settings

    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < settings.WORKER_NICENESS:
        os.setpriority(os.PRIO_PROCESS, 0, settings.WORKER_NICENESS)
    return os.getpriority(os.PRIO_PROCESS, 0)


@worker_init.connect
def _worker_priority(**kwargs):
    # In the worker's main process before its pool starts, so every pool process and thread inherits it.
    worker_priority_lower()
