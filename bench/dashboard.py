"""Dashboard at scale: the background computation of a 1M-item project, then the page with a warm cache.

    createdb -h 127.0.0.1 -U postgres ss_dash_bench      # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ss_dash_bench python bench/dashboard.py --items 1000000

PostgreSQL only (the items are written with COPY). Builds a project like a busy real one: 20 generation jobs, six
labels, an attribute dimension, 70% auto-accepted, 12% decided by people (one Review each, spread over 30 days), 1%
audits, 1% overlap items with a second opinion. Then it times ``dashboard_compute`` (what the Celery task runs) and
``--requests`` GETs of the dashboard page through Django's test client (full page and the HTMX poll), with the
snapshots fresh. It deletes everything it made at the end. The last line printed is one JSON object with every figure.
"""
import argparse
import json
import os
import random
import statistics
import sys
import time

from common import LABELS, WORDS, items_copy, peak_rss_mb, project_remove, setup_django

TOPICS = ["sports", "finance", "travel", "science", "politics"]
JOBS = 20


def item_rows(n: int, seed: int = 11):
    """Tab-separated rows for COPY, in the column order of ``ITEM_COLUMNS``."""
    rng = random.Random(seed)
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        roll = rng.random()
        if roll < 0.70:
            status, final = "auto_accepted", "[]"
        elif roll < 0.80:
            status = "accepted"
            final = json.dumps([label if rng.random() < 0.85 else rng.choice(LABELS)])
        elif roll < 0.82:
            status, final = "rejected", "[]"
        elif roll < 0.95:
            status, final = "needs_review", "[]"
        elif roll < 0.98:
            status, final = "filtered", "[]"
        else:
            status, final = "proposed", "[]"
        job = 1 + i * JOBS // n
        topic = TOPICS[rng.randrange(len(TOPICS))] if rng.random() < 0.8 else TOPICS[0]
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))) + f" {i % 50_000}?"
        provenance = json.dumps({"job": job, "conditions": {"label": label, "attributes": {"topic": topic}}})
        is_audit = "t" if status in ("accepted", "rejected") and rng.random() < 0.08 else "f"
        required = 2 if status in ("accepted", "rejected") and rng.random() < 0.08 else 1
        yield "\t".join([
            text, "{}", "llm", status, json.dumps([label]), "{}", "", "{}", "", is_audit,
            final, "", provenance, str(job), f"{rng.getrandbits(128):032x}{i:032x}"[:64], "1", str(required),
            str(required if status in ("accepted", "rejected") else 0),
        ])


ITEM_COLUMNS = ("text", "extra", "source", "status", "proposed_labels", "llm_votes", "model_label", "model_scores",
                "route_reason", "is_audit", "final_labels", "filter_reason", "provenance", "generation_job_id",
                "content_hash", "version", "reviews_required", "review_count")


def build(n: int) -> dict:
    from django.db import connection, transaction

    from annotation.models import AttributeDimension, Label
    from annotation.projects import services
    from tests.support.factories import make_user

    lead = make_user(f"bench-lead-{os.getpid()}")
    others = [make_user(f"bench-ann{k}-{os.getpid()}") for k in range(3)]
    project = services.project_create(name="Dashboard bench", lead=lead)
    Label.objects.bulk_create(Label(project=project, name=name, order=k) for k, name in enumerate(LABELS))
    AttributeDimension.objects.create(project=project, name="topic", values=TOPICS)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        items_copy(project=project, columns=ITEM_COLUMNS, rows=item_rows(n))
        # One decision per decided item, by one of three annotators, spread over 30 days.
        users = [u.pk for u in others]
        cursor.execute(
            """
            INSERT INTO annotation_review (item_id, project_id, user_id, action, before, after, reason, note, is_audit,
                                           created_at)
            SELECT id, project_id, (ARRAY[%s, %s, %s])[1 + id %% 3],
                   CASE WHEN status = 'rejected' THEN 'reject'
                        WHEN final_labels = proposed_labels THEN 'accept' ELSE 'edit' END,
                   '{}'::jsonb,
                   jsonb_build_object('status', status, 'labels', final_labels, 'version', version),
                   '', '', is_audit, now() - (id %% 30) * interval '1 day'
            FROM annotation_item WHERE project_id = %s AND status IN ('accepted', 'rejected')
            """,
            [*users, project.pk],
        )
        # Second opinions on overlap items: the next annotator along, agreeing four times out of five.
        cursor.execute(
            """
            INSERT INTO annotation_review (item_id, project_id, user_id, action, before, after, reason, note, is_audit,
                                           created_at)
            SELECT id, project_id, (ARRAY[%s, %s, %s])[1 + (id + 1) %% 3], 'accept', '{}'::jsonb,
                   jsonb_build_object('status', 'accepted', 'version', version + 1, 'second_opinion', true,
                                      'labels', CASE WHEN id %% 5 = 0 THEN proposed_labels ELSE final_labels END),
                   '', '', is_audit, now()
            FROM annotation_item WHERE project_id = %s AND reviews_required = 2 AND status = 'accepted'
            """,
            [*users, project.pk],
        )
        cursor.execute("ANALYZE annotation_item")
        cursor.execute("ANALYZE annotation_review")
    return {"project": project, "lead": lead, "others": others, "build_s": round(time.perf_counter() - started, 1)}


def time_page(project, lead, requests: int) -> dict:
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    setup_test_environment()
    client = Client()
    client.force_login(lead)
    url = reverse("dashboard", args=[project.pk])
    full, htmx = [], []
    for _ in range(requests):
        t0 = time.perf_counter()
        response = client.get(url)
        full.append(time.perf_counter() - t0)
        assert response.status_code == 200 and b"Recomputing" not in response.content, "snapshots should be fresh"
        t0 = time.perf_counter()
        response = client.get(url, headers={"HX-Request": "true"})
        htmx.append(time.perf_counter() - t0)
        assert response.status_code == 200
    return {"page_median_s": round(statistics.median(full), 3), "page_max_s": round(max(full), 3),
            "poll_median_s": round(statistics.median(htmx), 3), "page_bytes": len(response.content)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    from annotation.dashboard import services as dashboard
    from annotation.models import DashboardSnapshot

    if connection.vendor != "postgresql":
        sys.exit("bench/dashboard.py needs DATABASE_URL pointing at PostgreSQL")
    built = build(args.items)
    try:
        print(f"built {args.items} items in {built['build_s']} s", flush=True)
        t0 = time.perf_counter()
        dashboard.dashboard_compute(project_id=built["project"].pk)
        compute_s = time.perf_counter() - t0
        snapshots = {s.kind: s for s in DashboardSnapshot.objects.filter(project=built["project"])}
        errors = {kind: s.error for kind, s in snapshots.items() if s.error}
        assert not errors, errors
        print(f"computed in {compute_s:.1f} s", flush=True)
        page = time_page(built["project"], built["lead"], args.requests)
        quality = snapshots["quality"].data
        result = {
            "bench": "dashboard", "database": connection.vendor, "items": args.items,
            "reviews": sum(u["n"] for u in snapshots["overview"].data["per_user"]),
            "overlap_items": quality["agreement"]["items"], "build_s": built["build_s"],
            "compute_s": round(compute_s, 1),
            "overview_s": snapshots["overview"].duration_s, "quality_s": snapshots["quality"].duration_s,
            "compute_peak_rss_mb": round(peak_rss_mb()), **page,
            "alpha": round(quality["agreement"]["alpha"], 3),
            "accuracy": snapshots["overview"].data["accuracy"],
        }
    finally:
        project_remove(built["project"], [built["lead"], *built["others"]])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
