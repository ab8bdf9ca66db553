"""Run the embedded runtime in one command: migrate, build the demo, start a Celery worker and the web server.

It is the development runtime: manage.py turns DEBUG on for it (settings are read before any command runs), and it
refuses to start with DEBUG set off, where runserver and the demo's known passwords have no place.
"""
import os
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Migrate, create the demo project, then run a Celery worker and the development web server together."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-demo", action="store_true")

    def handle(self, *args, addrport, no_demo, **options):
        if not settings.DEBUG:
            raise CommandError("manage.py dev is the development runtime and needs DEBUG on; for production run "
                               'gunicorn and a Celery worker (README, "Running at scale").')
        # runserver's auto-reloader runs this command again in a child process (RUN_MAIN=true); only the first
        # process does the one-off work and owns the worker.
        if os.environ.get("RUN_MAIN") == "true":
            call_command("runserver", addrport)
            return
        call_command("migrate", interactive=False, verbosity=0)
        if not no_demo:
            call_command("demo")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "synthstudio", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--hostname", "dev@%h"],
            cwd=settings.BASE_DIR,
        )
        self.stdout.write(self.style.SUCCESS(
            f"Celery worker started (pid {worker.pid}, broker {settings.CELERY_BROKER_URL.split('://')[0]}). "
            f"Open http://{addrport}/"
        ))
        try:
            call_command("runserver", addrport)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
