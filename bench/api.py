"""The API against the pages' own paths: bulk create through the API vs the file import (rows/s), the item list's
first and a deep page at N items (p50/p99, through the whole request: token, query, serialisation), and the export
through the API vs the export page's download (seconds for the same bytes).

In process, through Django's test client (no network), on a throwaway SQLite database or the PostgreSQL database
DATABASE_URL names (a fresh project; removed afterwards). Results: bench/RESULTS.md.

    python bench/api.py --bulk 100000 --items 1000000
"""
import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bulk", type=int, default=100_000, help="items to create through the API and by import")
    parser.add_argument("--items", type=int, default=1_000_000, help="items of the project the list and export read")
    parser.add_argument("--pages", type=int, default=50, help="requests per page measured")
    parser.add_argument("--exports", type=int, default=2, help="exports per path")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-api-")
    # This folder is on the path (a script's own), and its generation.py would stand in for the generation app.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    common.setup_django(folder=folder, migrate=True)

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from annotation.io import importing
    from annotation.models import Item, Label, Status
    from annotation.projects import services
    from synthstudio.api import tokens
    from synthstudio.lib import sql
    from synthstudio.lib.text import content_digest

    def make_project(*, lead, name, labels):
        project = services.project_create(name=name, lead=lead)
        Label.objects.bulk_create(Label(project=project, name=label, order=i) for i, label in enumerate(labels))
        return project

    suffix = str(int(time.time()))
    lead = get_user_model().objects.create_user(f"bench-api-{suffix}", password="bench-api-password-1")
    users = [lead]
    secret = tokens.token_create(user=lead, name="bench").secret
    api = Client(HTTP_HOST="localhost", headers={"Authorization": f"Bearer {secret}"})
    browser = Client(HTTP_HOST="localhost")
    browser.force_login(lead)
    words = common.WORDS
    print(f"database: {connection.vendor}; bulk {args.bulk:,}; items {args.items:,}")

    def text(i: int, tag: str) -> str:
        return f"{tag} {i} " + " ".join(words[(i * k + k) % len(words)] for k in range(1, 9))

    # 1. Bulk create through the API (10,000 per request) vs the file import, into empty projects.
    bulk_project = make_project(lead=lead, name=f"bench api bulk {suffix}", labels=common.LABELS)
    batches = [[{"text": text(i, "bulk"), "llm_labels": [common.LABELS[i % 6]], "llm_confidence": 0.8}
                for i in range(start, min(start + 10_000, args.bulk))] for start in range(0, args.bulk, 10_000)]
    elapsed = 0.0
    for batch in batches:
        seconds, response = timed(lambda: api.post(f"/api/v1/projects/{bulk_project.id}/items/bulk",
                                                   {"items": batch}, content_type="application/json"))
        assert response.status_code == 201, response.content[:300]
        elapsed += seconds
    print(f"bulk create via API: {args.bulk:,} rows in {elapsed:.1f} s = {args.bulk / elapsed:,.0f} rows/s")

    import_project = make_project(lead=lead, name=f"bench api import {suffix}", labels=common.LABELS)
    path = Path(folder) / "pool.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "llm", "confidence"])
        for i in range(args.bulk):
            writer.writerow([text(i, "file"), common.LABELS[i % 6], 0.8])
    options = importing.ImportOptions(format="csv", llm_label_column="llm", llm_confidence_column="confidence")
    job = importing.import_job_create(project=import_project, user=lead, file_name="pool.csv", options=options,
                                      source_path=path)
    seconds, job = timed(lambda: importing.import_job_run(job_id=job.id))
    assert job.rows_imported == args.bulk, job.errors
    print(f"file import:         {args.bulk:,} rows in {seconds:.1f} s = {args.bulk / seconds:,.0f} rows/s")

    # 2. Item list pages at N items (written directly, as a big project would have them).
    big = make_project(lead=lead, name=f"bench api list {suffix}", labels=common.LABELS)
    statuses = [Status.NEEDS_REVIEW, Status.AUTO_ACCEPTED, Status.ACCEPTED, Status.PROPOSED]
    batch = []
    for i in range(args.items):
        t = text(i, "big")
        batch.append({"text": t, "status": statuses[i % 4], "proposed_labels": [common.LABELS[i % 6]],
                      "content_hash": content_digest(t).hex()})
        if len(batch) == 5000:
            sql.rows_insert(model=Item, rows=batch, constant={"project_id": big.id})
            batch = []
    sql.rows_insert(model=Item, rows=batch, constant={"project_id": big.id})
    sql.statistics_refresh(model=Item)
    ids = list(Item.objects.filter(project=big).order_by("id").values_list("id", flat=True)[:: max(1, args.items // 10)])
    deep_id = ids[1] if len(ids) > 1 else ids[0]  # about 90% of the way down the newest-first list
    from synthstudio.api.common import cursor_encode

    for name, params in (("first page", {}), ("deep page", {"cursor": cursor_encode("after", deep_id)}),
                         ("first page, status filter", {"status": "accepted"}),
                         ("deep page, status filter", {"status": "accepted",
                                                       "cursor": cursor_encode("after", deep_id)})):
        url = f"/api/v1/projects/{big.id}/items"
        times = []
        for _ in range(args.pages):
            seconds, response = timed(lambda: api.get(url, {"limit": 50, **params}))
            assert response.status_code == 200 and len(response.json()["items"]) == 50
            times.append(seconds * 1000)
        times.sort()
        print(f"item list, {name}: p50 {statistics.median(times):.1f} ms, "
              f"p99 {times[min(len(times) - 1, int(len(times) * 0.99))]:.1f} ms ({args.pages} requests)")

    # 3. Export of the big project: the API against the export page's download (same filters: everything, CSV).
    for label, client, url in (("API", api, f"/api/v1/projects/{big.id}/export"),
                               ("page", browser, f"/projects/{big.id}/export/download/")):
        runs = []
        for _ in range(args.exports):
            def download():
                response = client.get(url, {"format": "csv", "include": "all"})
                return sum(len(chunk) for chunk in response.streaming_content)
            seconds, size = timed(download)
            runs.append(seconds)
        print(f"export via {label}: {min(runs):.2f} s best of {args.exports} ({size / 1e6:.1f} MB)")

    for project in (bulk_project, import_project):
        common.project_remove(project, [])
    common.project_remove(big, users)


if __name__ == "__main__":
    main()
