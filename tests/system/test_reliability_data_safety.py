"""Data safety: nothing in the UI hard-deletes items or reviews, the full audit log exports, and a backup restores."""
import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import uuid

import pytest
from django.db import connection
from django.urls import reverse

from annotation.models import Item, Project, Review
from annotation.queue import services as queue
from tests.support.factories import make_item, make_user
from tests.support.runtime import REPO, require, worker_env
from tests.support.visits import ROUTES, fill

DESTRUCTIVE = {"remove": "1", "delete": "1", "action": "reject", "reason": "other", "merge_into": "", "version": "1"}


def test_no_page_deletes_an_item_or_a_review(client, project, lead, world):
    item = queue.queue_claim(project=project, user=lead)
    queue.item_review(project=project, item_id=item.pk, user=lead, action="accept", expected_version=item.version,
                      labels=["positive"])
    make_item(project, "still waiting")
    items, reviews = Item.objects.count(), Review.objects.count()
    client.force_login(lead)
    for route, pattern in ROUTES:
        if pattern.name != "logout":
            client.post(fill(route, pattern, world), DESTRUCTIVE)
    assert Item.objects.count() >= items and Review.objects.count() >= reviews


def test_the_admin_cannot_delete_a_project_with_items(client, project, django_user_model):
    make_item(project)
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    client.post(reverse("admin:annotation_project_delete", args=[project.id]), {"post": "yes"})
    assert Project.objects.filter(pk=project.pk).exists() and Item.objects.filter(project=project).exists()


@pytest.fixture
def logged(project, lead, annotator):
    items = [make_item(project, f"item {i}") for i in range(3)]
    for item in items:
        claimed = queue.queue_claim(project=project, user=annotator)
        queue.item_review(project=project, item_id=claimed.pk, user=annotator, action="reject",
                          expected_version=claimed.version, reason="other", note="=cmd|' /C calc'!A0")
    return project


def test_the_audit_log_exports_every_review_as_csv_and_jsonl(client, logged, lead):
    client.force_login(lead)
    url = reverse("audit_log_download", args=[logged.id])
    expected = list(Review.objects.filter(project=logged).order_by("id").values_list("id", flat=True))
    response = client.get(url, {"format": "csv"})
    assert response.streaming and response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["id"]) for r in rows] == expected
    assert {r["note"] for r in rows} == {"'=cmd|' /C calc'!A0"}  # formula neutralised
    assert json.loads(rows[0]["after"])["status"] == "rejected" and rows[0]["user"] == "annotator"
    lines = b"".join(client.get(url, {"format": "jsonl"}).streaming_content).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == expected and records[0]["note"] == "=cmd|' /C calc'!A0"
    assert client.get(url, {"format": "xml"}).status_code == 400


def counts_in(database_url: str) -> dict:
    script = ("import json; from annotation.models import Item, Review, Project; "
              "print(json.dumps({'items': Item.objects.count(), 'reviews': Review.objects.count(), "
              "'projects': Project.objects.count(), 'texts': sorted(Item.objects.values_list('text', flat=True))}))")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=worker_env(DATABASE_URL=database_url))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def current_counts() -> dict:
    return {"items": Item.objects.count(), "reviews": Review.objects.count(), "projects": Project.objects.count(),
            "texts": sorted(Item.objects.values_list("text", flat=True))}


def test_a_backup_restores_to_a_working_database(transactional_db, project, annotator, tmp_path):
    make_user("someone")
    for i in range(3):
        make_item(project, f"backed up {i} <b>é</b>")
    item = queue.queue_claim(project=project, user=annotator)
    queue.item_review(project=project, item_id=item.pk, user=annotator, action="accept",
                      expected_version=item.version)
    before = current_counts()
    if connection.vendor == "sqlite":
        # What README's `sqlite3 var/db.sqlite3 ".backup ..."` does: a consistent copy even while the app writes.
        backup = tmp_path / "backup.sqlite3"
        with sqlite3.connect(connection.settings_dict["NAME"]) as live, sqlite3.connect(backup) as copy:
            live.backup(copy)
        assert counts_in(f"sqlite:///{backup}") == before
        return
    require(bool(shutil.which("pg_dump") and shutil.which("pg_restore")), "pg_dump and pg_restore")
    s = connection.settings_dict
    auth = ["-h", s["HOST"] or "127.0.0.1", "-p", str(s["PORT"] or 5432), "-U", s["USER"]]
    dump, fresh = tmp_path / "backup.dump", f"{s['NAME']}_restore_{uuid.uuid4().hex[:6]}"
    subprocess.run(["pg_dump", *auth, "-Fc", "-f", str(dump), s["NAME"]], check=True, timeout=120)
    subprocess.run(["createdb", *auth, fresh], check=True, timeout=60)
    try:
        subprocess.run(["pg_restore", *auth, "--no-owner", "-d", fresh, str(dump)], check=True, timeout=120)
        url = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{fresh}"
        assert counts_in(url) == before
    finally:
        subprocess.run(["dropdb", *auth, "--if-exists", fresh], timeout=60)
