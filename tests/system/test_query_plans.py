"""The hot reads of big projects walk the index written for them (PostgreSQL plans; bench/load.py has the timings).

A test table is tiny, so sequential and bitmap scans are switched off for the EXPLAIN: the question is which index the
planner can use to answer the query in order, not whether it prefers a bitmap (and a sort) on ten rows.
"""
import pytest
from django.db import connection, transaction

from annotation.items import selectors as browse
from annotation.models import Item
from generation import selectors
from generation.models import GenerationJob, JobMode
from tests.support.factories import make_item

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL query plans")


def plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_jobs_newest_items_come_from_the_job_index(project, lead):
    job = GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED)
    for _ in range(3):
        make_item(project, generation_job_id=job.id)
    # Many more items of the project outside the job, so that walking the project's index would read far more rows.
    Item.objects.bulk_create(Item(project=project, text=f"other {i}", content_hash=f"h{i}") for i in range(300))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_item")
    items = Item.objects.filter(project_id=project.id, generation_job_id=job.id).order_by("-id")[:50]
    shown = plan(items)
    assert "item_generation_job_id" in shown and "Sort" not in shown
    assert len(selectors.job_items(job=job, limit=50)) == 3


def test_a_deep_browse_page_is_one_index_range(project):
    items = [make_item(project) for _ in range(3)]
    page = Item.objects.filter(project=project, archived_at__isnull=True, id__lt=items[-1].id).order_by("-id")[:51]
    shown = plan(page)
    assert "item_project_id" in shown and "Sort" not in shown
    assert [i.id for i in browse.items_browse(project=project, after=items[-1].id).items] == [items[1].id,
                                                                                              items[0].id]


def test_the_retraining_trigger_counts_human_decisions_from_their_own_index(project, lead):
    from annotation.models import HUMAN_DECISIONS, Review, ReviewAction

    item = make_item(project)
    # Routing writes far more rows than people do; the trigger must not walk them.
    Review.objects.bulk_create(Review(item=item, project=project, action=ReviewAction.ROUTE) for _ in range(300))
    Review.objects.create(item=item, project=project, user=lead, action=ReviewAction.ACCEPT)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_review")
    reviews = Review.objects.filter(id__gt=0, project_id=project.id, action__in=HUMAN_DECISIONS,
                                    user__isnull=False).order_by()[:50]
    assert "review_human_decisions" in plan(reviews)


def test_the_queue_claims_and_counts_from_the_queue_index(project, lead):
    from django.utils import timezone

    from annotation.models import Status
    from annotation.queue import services as queue

    for i in range(3):
        make_item(project, status=Status.NEEDS_REVIEW, ambiguity=i / 3)
    # Far more decided items, so that walking the project's other indexes would read far more rows.
    Item.objects.bulk_create(Item(project=project, text=f"done {i}", content_hash=f"d{i}", status=Status.ACCEPTED)
                             for i in range(300))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_item")
    waiting = Item.objects.filter(project=project, archived_at__isnull=True, status=Status.NEEDS_REVIEW).order_by()
    # Either index holding the status reads the waiting rows alone (at 1M items PostgreSQL picks an index-only scan of
    # item_queue_order, bench/RESULTS.md); never the whole project.
    counted = plan(waiting.values("pk")[:1001])
    assert "item_queue_order" in counted or "Index Cond: ((project_id = %d) AND ((status)::text = 'needs_review'" % (
        project.pk) in counted
    with transaction.atomic():
        where, params = queue._CLAIM.sql(project=project.pk, user=lead.pk, now=timezone.now())
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute(f"EXPLAIN UPDATE annotation_item SET claimed_by_id = NULL {where}", params)
            shown = "\n".join(row[0] for row in cursor.fetchall())
    # The held item comes from the claimed_by index; every candidate part from the queue's partial indexes.
    assert "item_queue_order" in shown and "item_second_opinions" in shown and "item_queue_checks" in shown
    assert "Seq Scan" not in shown
    # The counters: the waiting count from the queue index, the annotator's own reviews since today from theirs.
    now = timezone.now()
    sql, params = queue._PROGRESS.sql(project=project.pk, user=lead.pk, now=now, day_start=now, hour_ago=now,
                                      since=now)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        counters = "\n".join(row[0] for row in cursor.fetchall())
    assert "review_project_user_created" in counters and "Seq Scan" not in counters
