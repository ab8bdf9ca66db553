"""Build the demo project from the TREC sample shipped in annotation/demo_data (see its README for the origin)."""
import csv
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation.io.importing import ImportRow, items_import
from annotation.models import Label, Membership, Project, Role
from annotation.projects import services
from annotation.selection import selection_run_round
from generation.services import job_create

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo_data" / "trec6_sample.csv"
DEMO_PROJECT = "Demo: TREC question types"
USERS = {"lead": ("demo-lead", Role.LEAD), "annotator": ("demo-annotator", Role.ANNOTATOR)}
LABELS = [
    ("description", "Asks for a description, definition or reason.", ["description", "definition", "reason"], "1"),
    ("entity", "Asks for a thing: an animal, a product, a colour, a film...", ["entity", "thing", "object"], "2"),
    ("abbreviation", "Asks what an abbreviation stands for.", ["abbreviation", "acronym"], "3"),
    ("human", "Asks for a person or a group of people.", ["human", "person", "who"], "4"),
    ("location", "Asks for a place.", ["location", "place", "where"], "5"),
    ("numeric", "Asks for a number, a date, an amount.", ["numeric", "number", "date", "how many"], "6"),
]
SEEDS = 100


class Command(BaseCommand):
    help = "Create a demo project with a lead, an annotator, labels and seed items (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="allow running with DEBUG off")

    def handle(self, *args, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("The demo creates users with known passwords; run it with DEBUG on, or pass --force.")
        users = {name: self._user(name, password) for name, (password, _) in USERS.items()}
        project = Project.objects.filter(name=DEMO_PROJECT).first()
        if project is None:
            project = self._build(users)
            self.stdout.write(self.style.SUCCESS(f"Created '{DEMO_PROJECT}' with {project.items.count()} items."))
        else:
            self.stdout.write(f"'{DEMO_PROJECT}' exists already; left as it is.")
        for name, (password, role) in USERS.items():
            Membership.objects.get_or_create(user=users[name], project=project, defaults={"role": role})
            self.stdout.write(f"  log in as {name} / {password} ({role})")

    def _user(self, username, password):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    @transaction.atomic
    def _build(self, users):
        project = services.project_create(
            name=DEMO_PROJECT,
            lead=users["lead"],
            description="Classify each question by the type of answer it expects.",
        )
        Label.objects.bulk_create(
            Label(project=project, name=name, description=desc, label_words=words, hotkey=key, order=i)
            for i, (name, desc, words, key) in enumerate(LABELS)
        )
        with DEMO_FILE.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        seeds, pool = rows[:SEEDS], rows[SEEDS:]
        items_import(
            project=project,
            rows=[ImportRow(row=i, text=r["text"], final_labels=[r["label"]], provenance={"demo": "gold seed"})
                  for i, r in enumerate(seeds, 2)],
        )
        items_import(
            project=project,
            rows=[ImportRow(row=i, text=r["text"], extra={"gold": r["label"]}) for i, r in enumerate(pool, 2 + SEEDS)],
        )
        # Pool items get proposed labels from offline label-word matching: deterministic, fast, and honestly not an LLM.
        job_create(project=project, user=users["lead"], mode="label_pool", provider="offline",
                   options={"count": len(pool), "requests_per_batch": 64}, run_now=True)
        selection_run_round(project=project, trigger="demo")  # route the labelled pool: review only what is ambiguous
        return project
