"""The hot reads of big projects walk the index written for them (PostgreSQL plans; bench/load.py has the timings).

A test table is tiny, so sequential and bitmap scans are switched off for the EXPLAIN: the question is which index the
planner can use to answer the query in order, not whether it prefers a bitmap (and a sort) on ten rows.
"""
import pytest
from django.db import connection, transaction

from annotation import browse
from annotation.models import Item
from generation import selectors
from generation.models import GenerationJob, JobMode
from tests.factories import make_item

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
    from annotation.models import Review, ReviewAction
    from annotation.selection.rounds import HUMAN_REVIEW_ACTIONS

    item = make_item(project)
    # Routing writes far more rows than people do; the trigger must not walk them.
    Review.objects.bulk_create(Review(item=item, project=project, action=ReviewAction.ROUTE) for _ in range(300))
    Review.objects.create(item=item, project=project, user=lead, action=ReviewAction.ACCEPT)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_review")
    reviews = Review.objects.filter(id__gt=0, project_id=project.id, action__in=HUMAN_REVIEW_ACTIONS,
                                    user__isnull=False).order_by()[:50]
    assert "review_human_decisions" in plan(reviews)
