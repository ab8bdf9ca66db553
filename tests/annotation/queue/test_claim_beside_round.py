"""A scoring round writing scores holds row locks on the items of its batch until the batch commits; a claim must pass
over those rows rather than wait for them (``FOR UPDATE SKIP LOCKED``, annotation/queue/services.py)."""
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotation.items.services import ItemChange, items_change
from annotation.models import Item
from annotation.queue import services as queue
from tests.support.factories import add_member, make_item, make_project, make_user


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's; SQLite runs one writer")
def test_a_claim_passes_over_items_a_round_has_locked_instead_of_waiting(transactional_db):
    lead, annotator = make_user("lead"), make_user("annotator")
    project = make_project(lead=lead)
    add_member(project, annotator)
    locked = [make_item(project, f"most ambiguous {i}", ambiguity=0.9) for i in range(3)]
    free = make_item(project, "less ambiguous", ambiguity=0.1)
    holding, release = threading.Event(), threading.Event()

    def round_batch():
        # What a round's write batch does: lock its rows (items_change) and keep them until the batch commits.
        try:
            with transaction.atomic():
                items_change(project_id=project.pk, item_ids=[i.pk for i in locked],
                             decide=lambda item: ItemChange(action="route", fields={"route_reason": "rescored"}))
                holding.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    writer = threading.Thread(target=round_batch)
    writer.start()
    try:
        assert holding.wait(timeout=60)
        with transaction.atomic():
            # Waiting for the batch's locks would fail the claim here instead of hanging the test.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '5s'")
            claimed = queue.queue_claim(project=project, user=annotator)
    finally:
        release.set()
        writer.join(timeout=60)
    assert claimed.pk == free.pk
    assert Item.objects.get(pk=free.pk).claimed_by_id == annotator.pk


def test_a_change_that_skips_held_items_leaves_what_a_reviewer_holds(project, annotator):
    make_item(project, "to review")
    held = queue.queue_claim(project=project, user=annotator)
    lapsed = make_item(project, "claimed once, lease over", claimed_by=annotator,
                       lease_expires_at=timezone.now() - timedelta(seconds=1))
    free = make_item(project, "nobody's")
    seen = []

    def decide(item):
        seen.append(item.pk)
        return ItemChange(action="route", fields={"route_reason": "rescored"})

    changed = items_change(project_id=project.pk, item_ids=[held.pk, lapsed.pk, free.pk], decide=decide,
                           skip_held=True)
    assert sorted(seen) == sorted(i.pk for i in changed) == sorted([lapsed.pk, free.pk])
    assert Item.objects.get(pk=held.pk).version == held.version
    # Without the option every row is the writer's (a label rename must reach held items too).
    seen.clear()
    items_change(project_id=project.pk, item_ids=[held.pk, free.pk], decide=decide)
    assert sorted(seen) == sorted([held.pk, free.pk])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's; SQLite runs one writer")
def test_a_reviewer_saves_the_item_they_hold_while_a_round_batch_skipping_held_items_is_open(transactional_db):
    lead, annotator = make_user("lead"), make_user("annotator")
    project = make_project(lead=lead)
    add_member(project, annotator)
    make_item(project, "to review", ambiguity=0.5)
    others = [make_item(project, f"scored {i}") for i in range(3)]
    held = queue.queue_claim(project=project, user=annotator)
    holding, release = threading.Event(), threading.Event()

    def round_batch():
        try:
            with transaction.atomic():
                items_change(project_id=project.pk, item_ids=[held.pk, *(i.pk for i in others)], skip_held=True,
                             decide=lambda item: ItemChange(action="route", fields={"route_reason": "rescored"}))
                holding.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    writer = threading.Thread(target=round_batch)
    writer.start()
    try:
        assert holding.wait(timeout=60)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '5s'")
            review = queue.item_review(project=project, item_id=held.pk, user=annotator, action="accept",
                                       expected_version=held.version)
    finally:
        release.set()
        writer.join(timeout=60)
    assert review.action == "accept"
    assert Item.objects.get(pk=held.pk).status == "accepted"
