"""Recount items and correct the per-status counters the pages read (annotation/items/counts.py), reporting drift."""
from django.core.management.base import BaseCommand, CommandError

from annotation.items.counts import item_counts_reconcile
from annotation.models import Project


class Command(BaseCommand):
    help = ("Recount every project's items (or one project's), correct the per-status counters where they drifted "
            "and print the drift. Exit status 0 either way; --check exits 1 when any drift was found.")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, help="project id (default: every project)")
        parser.add_argument("--check", action="store_true", help="exit with status 1 if any counter had drifted")

    def handle(self, *args, project: int | None, check: bool, **options):
        if project is not None and not Project.objects.filter(pk=project).exists():
            raise CommandError(f"No project with id {project}")
        drift = item_counts_reconcile(project_id=project)
        for d in drift:
            self.stdout.write(f"drift: {d}; corrected")
        scope = f"project {project}" if project is not None else "every project"
        self.stdout.write(f"{len(drift)} counter(s) drifted in {scope}" + ("; all corrected" if drift else ""))
        if check and drift:
            raise SystemExit(1)
