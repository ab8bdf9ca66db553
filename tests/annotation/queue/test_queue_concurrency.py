"""Claims under real concurrency: annotators in threads, each with its own database connection, on committed rows.

On PostgreSQL this exercises ``SELECT ... FOR UPDATE SKIP LOCKED``; on SQLite the conditional UPDATE.
"""
from collections import Counter

import pytest

from annotation.errors import ServiceError
from annotation.models import Item, Review, ReviewAction
from annotation.queue import services as queue
from tests.support.concurrency import at_once
from tests.support.factories import add_member, make_item, make_project, make_user

WORKERS = 4


def run_in_threads(target, users):
    """``target(user)`` for every user at the same moment; the results by username."""
    results = at_once(*(lambda user=user: target(user) for user in users))
    return {user.username: result for user, result in zip(users, results)}


@pytest.fixture
def team(transactional_db):
    lead = make_user("lead")
    project = make_project(lead=lead)
    users = [make_user(f"annotator{i}") for i in range(WORKERS)]
    for user in users:
        add_member(project, user)
    return project, users


def test_simultaneous_claims_get_different_items(team):
    project, users = team
    for i in range(WORKERS * 2):
        make_item(project, ambiguity=i / 10)
    results = run_in_threads(lambda user: queue.queue_claim(project=project, user=user).pk, users)
    assert len(set(results.values())) == WORKERS
    held = dict(Item.objects.filter(claimed_by__isnull=False).values_list("pk", "claimed_by__username"))
    assert {pk: name for name, pk in results.items()} == held


def test_simultaneous_claims_take_the_random_checks_first_and_different_ones(team):
    """The queue's checks part (calibration items and audits, served first) is claimed like the rest: annotators
    asking at the same moment get different checks before any ambiguous item."""
    project, users = team
    for i in range(WORKERS * 2):
        make_item(project, ambiguity=0.9 + i / 100)
    checks = {make_item(project, ambiguity=0.01, is_audit=i % 2 == 0, is_calibration=i % 2 == 1).pk
              for i in range(WORKERS)}
    results = run_in_threads(lambda user: queue.queue_claim(project=project, user=user).pk, users)
    assert set(results.values()) == checks


def test_annotators_working_through_the_queue_review_each_item_once(team):
    project, users = team
    items = [make_item(project, ambiguity=(i % 7) / 7) for i in range(30)]

    def drain(user):
        reviewed = []
        while (item := queue.queue_claim(project=project, user=user)) is not None:
            queue.item_review(project=project, item_id=item.pk, user=user, action="accept",
                              expected_version=item.version)
            reviewed.append(item.pk)
        return reviewed

    results = run_in_threads(drain, users)
    everything = [pk for reviewed in results.values() for pk in reviewed]
    assert sorted(everything) == sorted(item.pk for item in items)
    per_item = Counter(Review.objects.filter(action=ReviewAction.ACCEPT).values_list("item_id", flat=True))
    assert set(per_item.values()) == {1}


def test_one_annotator_sending_reviews_at_once_gives_an_overlap_item_one_review(team):
    """Issue 16 #4 under concurrency: four requests of one annotator (as from four tabs), each re-reading the version
    and posting again until refused, all at the same moment."""
    project, users = team
    annotator = users[0]
    item = make_item(project, reviews_required=3)

    def hammer(user):
        saved = 0
        for _ in range(4):
            version = Item.objects.get(pk=item.pk).version
            try:
                queue.item_review(project=project, item_id=item.pk, user=user, action="accept",
                                  expected_version=version)
                saved += 1
            except ServiceError:
                pass
        return saved

    barrier_users = [annotator] * WORKERS
    run_in_threads(hammer, barrier_users)
    item.refresh_from_db()
    assert Review.objects.filter(item=item, user=annotator).count() == 1
    assert item.review_count == 1
