"""The one owner of item changes and their Review rows (annotation/items/services.py): the bulk form, the single
snapshot shape every writer logs, and a bulk change racing a review."""
import threading
import time

import pytest
from django.db import connection

from annotation.errors import StaleItem
from annotation.items.services import ItemChange, items_change
from annotation.models import IllegalTransition, Item, Label, Review, ReviewAction, Status
from annotation.projects import schema
from annotation.queue import services as queue
from annotation.selection import selection_run_round
from generation.models import JobMode
from tests.support.factories import add_member, make_item, make_project, make_user
from tests.support.jobs import seed, start

SNAPSHOT = {"status", "text", "labels", "version"}


def relabel_to(labels):
    return lambda item: ItemChange(action=ReviewAction.LLM_LABEL, proposed_labels=labels, note="test",
                                   fields={"llm_confidence": 0.5})


def test_items_change_writes_each_change_with_its_review(project, lead):
    a, b = make_item(project, "a"), make_item(project, "b", proposed=("negative",))
    changed = items_change(project_id=project.pk, item_ids=[b.pk, a.pk], decide=relabel_to(["negative"]), user=lead)
    assert [item.pk for item in changed] == [a.pk, b.pk]
    a.refresh_from_db()
    assert (a.proposed_labels, a.llm_confidence, a.version, a.status) == (["negative"], 0.5, 2, Status.NEEDS_REVIEW)
    review = Review.objects.get(item=a)
    assert (review.action, review.user, review.note) == (ReviewAction.LLM_LABEL, lead, "test")
    assert review.before == {"status": "needs_review", "text": "a", "labels": ["positive"], "version": 1}
    assert review.after == {"status": "needs_review", "text": "a", "labels": ["negative"], "version": 2}
    assert Review.objects.filter(item=b).get().before["version"] == 1


def test_items_change_leaves_rows_the_caller_declines_and_other_projects_alone(project, lead):
    kept, moved = make_item(project), make_item(project)
    foreign = make_item(make_project(lead=make_user("x")))
    changed = items_change(project_id=project.pk, item_ids=[kept.pk, moved.pk, foreign.pk],
                           decide=lambda item: None if item.pk == kept.pk else ItemChange(
                               action=ReviewAction.ROUTE, to=Status.AUTO_ACCEPTED))
    assert [item.pk for item in changed] == [moved.pk]
    assert Item.objects.get(pk=kept.pk).version == 1 and Item.objects.get(pk=foreign.pk).version == 1
    assert Item.objects.get(pk=moved.pk).status == Status.AUTO_ACCEPTED
    assert list(Review.objects.values_list("item_id", flat=True)) == [moved.pk]


def test_items_change_checks_the_state_machine_and_writes_nothing_on_refusal(project):
    fine, decided = make_item(project), make_item(project, status=Status.ACCEPTED)
    with pytest.raises(IllegalTransition):
        items_change(project_id=project.pk, item_ids=[fine.pk, decided.pk],
                     decide=lambda item: ItemChange(action=ReviewAction.ROUTE, to=Status.AUTO_ACCEPTED))
    assert set(Item.objects.values_list("status", "version")) == {(Status.NEEDS_REVIEW, 1), (Status.ACCEPTED, 1)}
    assert not Review.objects.exists()


def test_an_item_change_cannot_smuggle_audited_fields():
    with pytest.raises(ValueError, match="cannot write status, text"):
        ItemChange(action=ReviewAction.ROUTE, fields={"text": "x", "status": "accepted"})


def test_every_writer_logs_one_snapshot_shape(project, lead, annotator, llm):
    second = make_user("second")
    add_member(project, second)
    Label.objects.filter(project=project, name="positive").update(label_words=["wonderful", "loved"])
    seed(project)
    pool = make_item(project, "A wonderful evening, I loved it.", status=Status.NEEDS_REVIEW, proposed=())
    unlabelled = make_item(project, "routed", status=Status.PROPOSED, proposed=())
    start(project, lead, mode=JobMode.LABEL_POOL, provider="offline", count=100)  # llm_label on the pool item
    llm.brain.near_duplicate_rate = 0.5
    start(project, lead, count=20, samples_per_request=5, requests_per_batch=2)  # filter rows
    selection_run_round(project=project)  # route
    overlap = make_item(project, "overlap", reviews_required=2, ambiguity=0.9)
    edited = make_item(project, "edit me", ambiguity=0.8)
    for item, user, action, extra in [(overlap, annotator, "accept", {}), (overlap, second, "reject",
                                      {"reason": "other"}), (edited, annotator, "edit", {"text": "edited"})]:
        item.refresh_from_db()
        queue.item_review(project=project, item_id=item.pk, user=user, action=action, expected_version=item.version,
                          **extra)
    queue.item_undo(project=project, user=second)  # undo of a second opinion
    queue.item_undo(project=project, user=annotator)  # undo of the edit
    assert queue.queue_claim(project=project, user=annotator).pk == edited.pk  # undo gave it back
    queue.item_review(project=project, item_id=edited.pk, user=annotator, action="skip", expected_version=0)
    schema.label_update(label=Label.objects.get(project=project, name="negative"), user=lead, name="bad")

    rows = list(Review.objects.all())
    actions = {row.action for row in rows}
    assert actions >= {"llm_label", "filter", "route", "accept", "reject", "edit", "undo", "skip", "relabel"}
    for row in rows:
        assert set(row.after) - {"second_opinion"} == SNAPSHOT, (row.action, row.after)
        assert set(row.before) == (set() if row.action == ReviewAction.FILTER else SNAPSHOT), (row.action, row.before)
        assert all(isinstance(row.after[key], kind) for key, kind in
                   [("status", str), ("text", str), ("labels", list), ("version", int)]), (row.action, row.after)
    assert Review.objects.get(item=unlabelled, action=ReviewAction.ROUTE).after["text"] == "routed"
    labelled = Review.objects.get(item=pool, action=ReviewAction.LLM_LABEL)
    assert (labelled.before["labels"], labelled.after["labels"], labelled.user) == ([], ["positive"], None)
    assert Review.objects.get(item=overlap, user=second, action=ReviewAction.REJECT).after["second_opinion"] is True


def _version_chain_holds(item: Item) -> bool:
    """Each row starts from the version the one before it ended at, and the last one ends at the item's version."""
    rows = list(Review.objects.filter(item=item).order_by("id"))
    return all(b.before["version"] == a.after["version"] for a, b in zip(rows, rows[1:])) and (
        not rows or rows[-1].after["version"] == item.version)


def _wait_for_the_other_writer(outcome: dict) -> None:
    """Hold on until the concurrent review has finished or is waiting for a row lock (PostgreSQL). On SQLite the review
    cannot start writing before this transaction ends (IMMEDIATE transactions), so there is nothing to wait for."""
    if connection.vendor != "postgresql":
        return
    for _ in range(3000):
        if "review" in outcome:
            return
        with connection.cursor() as cursor:
            # A transaction keeps its first view of pg_stat_activity unless told to drop it.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.01)
    raise AssertionError("the review neither finished nor waited for the row")


@pytest.mark.django_db(transaction=True)
def test_a_bulk_change_racing_a_review_never_overwrites_it():
    """The bulk writer holds the rows from its read to its write: a review sent in between waits, then finds the
    version moved and is refused, so one change wins and the log's version chain stays unbroken."""
    lead, annotator = make_user("lead"), make_user("annotator")
    project = make_project(lead=lead)
    add_member(project, annotator)
    item = make_item(project)
    locked = threading.Event()
    outcome = {}

    def bulk():
        def decide(row: Item) -> ItemChange | None:
            locked.set()
            _wait_for_the_other_writer(outcome)
            return None if row.status != Status.NEEDS_REVIEW else relabel_to(["negative"])(row)
        try:
            outcome["bulk"] = len(items_change(project_id=project.pk, item_ids=[item.pk], decide=decide))
        except Exception as exc:  # shown by the assertion below
            outcome["bulk"] = repr(exc)
        finally:
            connection.close()

    def review():
        locked.wait(timeout=30)
        try:
            queue.item_review(project=project, item_id=item.pk, user=annotator, action="accept", expected_version=1)
            outcome["review"] = "saved"
        except StaleItem:
            outcome["review"] = "refused"
        finally:
            connection.close()

    threads = [threading.Thread(target=bulk), threading.Thread(target=review)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    item.refresh_from_db()
    assert outcome == {"bulk": 1, "review": "refused"}
    assert (item.status, item.proposed_labels, item.version) == (Status.NEEDS_REVIEW, ["negative"], 2)
    assert Review.objects.filter(item=item).count() == 1 and _version_chain_holds(item)
