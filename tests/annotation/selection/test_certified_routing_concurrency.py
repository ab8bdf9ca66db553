"""The end of calibration under real concurrency: reviewers in threads, each with its own database connection."""
import threading

import pytest
from django.db import connection

from annotation.models import Item, Status
from annotation.queue import services as queue
from annotation.selection import tasks
from tests.support.concurrency import at_once
from tests.support.factories import add_member, make_item, make_project, make_user

REVIEWERS = 4


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite runs one write transaction at a time")
def test_reviewers_deciding_the_last_calibration_items_at_once_still_start_the_round(transactional_db, monkeypatch):
    lead = make_user("lead")
    project = make_project(lead=lead)
    users = [make_user(f"annotator{i}") for i in range(REVIEWERS)]
    for user in users:
        add_member(project, user)
    items = [make_item(project, f"calibration {i}", is_calibration=True) for i in range(REVIEWERS)]
    requested = []
    monkeypatch.setattr(tasks.selection_round, "delay", lambda *args, **kwargs: requested.append((args, kwargs)))
    # Every reviewer has written the decision (not committed yet) before any checks whether calibration is done:
    # the interleaving in which each would see the others' items still open.
    decided = threading.Barrier(REVIEWERS)
    real_transition = queue.item_transition

    def transition_then_wait(**kwargs):
        review = real_transition(**kwargs)
        decided.wait(timeout=30)
        return review

    monkeypatch.setattr(queue, "item_transition", transition_then_wait)

    def decide(user, item):
        return queue.item_review(project=project, item_id=item.pk, user=user, action="accept",
                                 expected_version=item.version)

    at_once(*(lambda user=user, item=item: decide(user, item) for user, item in zip(users, items)))
    assert set(Item.objects.filter(project=project).values_list("status", flat=True)) == {Status.ACCEPTED}
    assert requested == [((project.pk,), {"force": True})]
