"""Build the demo projects from the samples shipped in annotation/demo_data (see its README for their origin).

- "Demo: TREC question types": 6 labels, 100 gold seeds, a pool labelled by offline label-word matching (no LLM).
- "Demo: movie reviews, real GPT-3.5 labels": 400 movie-review sentences with the labels GPT-3.5 really gave them
  (right on about 90%). Its first round draws the calibration sample, so the queue opens on real LLM suggestions, and
  a few minutes of reviewing reach its certificate (target below) or say the target cannot be certified yet.
"""
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

DEMO_DATA = Path(__file__).resolve().parents[2] / "demo_data"
DEMO_FILE = DEMO_DATA / "trec6_sample.csv"
DEMO_PROJECT = "Demo: TREC question types"
MR_FILE = DEMO_DATA / "mr_gpt35_sample.csv"
MR_PROJECT = "Demo: movie reviews, real GPT-3.5 labels"
# A target the demo's 400 items can certify after a few minutes of reviewing (bench/RESULTS.md, "Demo project").
MR_TARGET = 0.9
MR_LABELS = [
    ("negative", "The sentence speaks badly of the film.", ["bad", "dull", "boring"], "1"),
    ("positive", "The sentence speaks well of the film.", ["good", "great", "moving"], "2"),
]
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
        for name, build in ((DEMO_PROJECT, self._build), (MR_PROJECT, self._build_mr)):
            project = Project.objects.filter(name=name).first()
            if project is None:
                project = build(users)
                self.stdout.write(self.style.SUCCESS(f"Created '{name}' with {project.items.count()} items."))
            else:
                self.stdout.write(f"'{name}' exists already; left as it is.")
            for user, (_, role) in USERS.items():
                Membership.objects.get_or_create(user=users[user], project=project, defaults={"role": role})
        for name, (password, role) in USERS.items():
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

    @transaction.atomic
    def _build_mr(self, users):
        project = services.project_create(
            name=MR_PROJECT,
            lead=users["lead"],
            description="Is this sentence from a movie review positive or negative about the film?",
        )
        Project.objects.filter(pk=project.pk).update(target_accuracy=MR_TARGET)
        Label.objects.bulk_create(
            Label(project=project, name=name, description=desc, label_words=words, hotkey=key, order=i)
            for i, (name, desc, words, key) in enumerate(MR_LABELS)
        )
        with MR_FILE.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        # The gold column stays in the file (for the README's numbers); the app gets the text and GPT-3.5's label.
        items_import(
            project=project,
            rows=[ImportRow(row=i, text=r["text"], proposed_labels=[r["llm_label"]] if r["llm_label"] else [],
                            provenance={"demo": "GPT-3.5 label, released with the FreeAL paper"})
                  for i, r in enumerate(rows, 2)],
        )
        selection_run_round(project=project, trigger="demo")  # draws the calibration sample: the queue starts there
        return project
