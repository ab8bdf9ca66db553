"""Review-queue and item-browser latency on a large project.

    python bench/review_queue.py [--items 200000] [--rounds 200]

Builds one project with ``--items`` items on a throwaway SQLite database (or DATABASE_URL if set; use a database of
its own): 90% decided (accepted/auto-accepted), 10% waiting for review (half scored, half not), 0.5% waiting for a
second opinion. Then times, in-process (no HTTP):

1. claim + accept: ``queue_claim`` then ``item_review`` for ``--rounds`` items, one annotator;
2. ``queue_progress`` (the queue page's counters);
3. browse: first page, a page in the middle (keyset ``after``), status filter, label filter, and a text search for a
   term that occurs once (the worst case of the plain ``icontains``).

Prints a table (median and 95th percentile in ms), then one JSON line last.
"""
import argparse
import json
import random
import statistics
import tempfile
import time

from common import setup_django


def build(n_items: int):
    from django.contrib.auth import get_user_model

    from annotation.models import Item, Label, Membership, Project, Role, Status

    User = get_user_model()
    lead = User.objects.create_user(f"bench-lead-{time.time_ns()}")
    annotator = User.objects.create_user(f"bench-annotator-{time.time_ns()}")
    project = Project.objects.create(name="bench queue")
    Membership.objects.create(project=project, user=lead, role=Role.LEAD)
    Membership.objects.create(project=project, user=annotator, role=Role.ANNOTATOR)
    Label.objects.bulk_create([Label(project=project, name=n, hotkey=str(i + 1)) for i, n in enumerate(["pos", "neg"])])
    rng = random.Random(7)
    batch = []
    for i in range(n_items):
        r = rng.random()
        fields = {"status": Status.ACCEPTED if r < 0.45 else Status.AUTO_ACCEPTED, "final_labels": ["pos"]}
        if r >= 0.9:
            fields = {"status": Status.NEEDS_REVIEW, "final_labels": [],
                      "ambiguity": rng.random() if r < 0.95 else None}
        elif r < 0.005:
            fields.update(status=Status.ACCEPTED, reviews_required=2, review_count=1)
        text = "needle in the haystack" if i == n_items // 3 else f"synthetic sample {i} about topic {i % 97}"
        batch.append(Item(project=project, text=text, content_hash=f"{i:064x}", source="llm",
                          proposed_labels=[rng.choice(["pos", "neg"])], **fields))
        if len(batch) == 10_000:
            Item.objects.bulk_create(batch)
            batch = []
    Item.objects.bulk_create(batch)
    return project, annotator


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    setup_django(folder=tempfile.mkdtemp(prefix="bench-queue-"), migrate=True)
    from django.db import connection

    from annotation.items import selectors as browse
    from annotation.models import Item
    from annotation.queue import services as queue

    start = time.perf_counter()
    project, annotator = build(args.items)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE annotation_item")
    build_s = time.perf_counter() - start

    def claim_and_accept():
        item = queue.queue_claim(project=project, user=annotator)
        queue.item_review(project=project, item_id=item.pk, user=annotator, action="accept",
                          expected_version=item.version)

    middle = Item.objects.filter(project=project).order_by("id")[args.items // 2].id
    cases = {
        "claim + accept": (claim_and_accept, args.rounds),
        "queue_progress": (lambda: queue.queue_progress(project=project, user=annotator), 20),
        "browse: first page": (lambda: browse.items_browse(project=project), 20),
        "browse: middle page (after=)": (lambda: browse.items_browse(project=project, after=middle), 20),
        "browse: status=needs_review": (lambda: browse.items_browse(project=project, status="needs_review"), 20),
        "browse: label=neg": (lambda: browse.items_browse(project=project, label="neg"), 20),
        "browse: rare text (worst case)": (lambda: browse.items_browse(project=project, q="needle"), 5),
    }
    results = {}
    print(f"{connection.vendor}, {args.items} items (built in {build_s:.0f} s)\n")
    print("| operation | median ms | p95 ms |\n|---|---:|---:|")
    for name, (fn, repeat) in cases.items():
        samples = sorted(timed(fn, repeat))
        p50, p95 = statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]
        results[name] = {"median_ms": round(p50, 2), "p95_ms": round(p95, 2), "n": repeat}
        print(f"| {name} | {p50:.1f} | {p95:.1f} |")
    print(json.dumps({"vendor": connection.vendor, "items": args.items, "results": results}))


if __name__ == "__main__":
    main()
