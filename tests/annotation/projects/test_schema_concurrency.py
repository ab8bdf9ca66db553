"""Two leads changing one project's label schema at the same moment, each in a thread with its own database connection.

Each lead's label rows are loaded before the threads meet at a barrier, as a page loads the label before it calls the
service: the race is between that read and the write. Afterwards no item may carry a label the schema lacks, and the
lead who lost is told why.
"""
import re
from collections import Counter
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from annotation.errors import ServiceError
from annotation.models import AttributeDimension, Item, Label, Review, ReviewAction, Role, Status
from annotation.projects import schema
from annotation.projects.selectors import project_items_with_unknown_labels
from annotation.queue.services import item_review
from annotation.selection import selection_request_round
from tests.support.concurrency import at_once, started_at_once
from tests.support.factories import add_member, make_item, make_project, make_user
from tests.support.runtime import wait_for

ITEMS = 200


def in_threads(*calls):
    """The calls at the same moment: ("ok", value) or ("refused", message) per call, in order."""
    return [("refused", str(r)) if isinstance(r, ServiceError) else ("ok", r)
            for r in at_once(*calls, refused=ServiceError)]


@pytest.fixture
def busy(transactional_db):
    """A project whose 'positive' label is on items in every place a label name is stored, plus a lead."""
    lead = make_user("lead")
    project = make_project(lead=lead, labels=("positive", "negative", "neutral"))
    for i in range(ITEMS):
        kind = i % 4
        if kind == 0:
            make_item(project, proposed=("positive",))
        elif kind == 1:
            make_item(project, status=Status.ACCEPTED, proposed=("negative",), final_labels=["positive"])
        elif kind == 2:
            make_item(project, proposed=("negative",), llm_votes={"positive": 1, "negative": 2})
        else:
            make_item(project, proposed=("negative",), model_label="positive")
    return project, lead


def label(project, name):
    return Label.objects.get(project=project, name=name)


def rename(project, lead, name, to):
    lab = label(project, name)
    return lambda: schema.label_update(label=lab, user=lead, name=to, hotkey=lab.hotkey, color=lab.color)


def merge(project, lead, name, into):
    lab, target = label(project, name), label(project, into)
    return lambda: schema.label_merge(label=lab, into=target, user=lead)


def delete(project, lead, name):
    lab = label(project, name)
    return lambda: schema.label_delete(label=lab)


# Each race: the two calls, what the loser is told, and the outcomes allowed. Both may win only where the two changes
# compose in one order: a merge into 'positive' followed by the rename of 'positive' relabels the merged items too.
RACES = {
    "rename-rename": (lambda p, u: [rename(p, u, "positive", "beta"), rename(p, u, "positive", "gamma")],
                      r"'positive' was renamed to '(beta|gamma)' by someone else", [["ok", "refused"]]),
    "merge-rename target": (lambda p, u: [merge(p, u, "negative", "positive"), rename(p, u, "positive", "good")],
                            r"'positive' was renamed to 'good' by someone else", [["ok", "refused"], ["ok", "ok"]]),
    "rename-merge source": (lambda p, u: [rename(p, u, "positive", "good"), merge(p, u, "positive", "negative")],
                            r"'positive' was renamed to 'good'|'positive' was deleted or merged", [["ok", "refused"]]),
    "delete-merge into it": (lambda p, u: [delete(p, u, "neutral"), merge(p, u, "positive", "neutral")],
                             r"'neutral' is used by \d+ items|'neutral' was deleted or merged", [["ok", "refused"]]),
}


@pytest.mark.parametrize("race", RACES)
def test_two_leads_changing_labels_at_once_leave_no_item_with_a_label_the_schema_lacks(busy, race):
    project, lead = busy
    calls, loser_says, allowed = RACES[race]
    results = in_threads(*calls(project, lead))
    unknown = project_items_with_unknown_labels(project=project)
    assert (unknown.count, unknown.examples) == (0, [])
    assert sorted(kind for kind, _ in results) in allowed, results
    for kind, message in results:
        if kind == "refused":
            assert re.search(loser_says, message), message
    # Every rewrite of an item bumped its version once and logged one relabel Review row; a refused change wrote none.
    relabels = Counter(Review.objects.filter(project=project, action=ReviewAction.RELABEL)
                       .values_list("item_id", flat=True))
    versions = dict(Item.objects.filter(project=project).values_list("id", "version"))
    assert {pk: relabels[pk] for pk in versions} == {pk: version - 1 for pk, version in versions.items()}


def test_the_rename_race_leaves_every_item_with_the_winners_name(busy):
    project, lead = busy
    results = in_threads(rename(project, lead, "positive", "beta"), rename(project, lead, "positive", "gamma"))
    winner = next(value for kind, value in results if kind == "ok").name
    assert list(Label.objects.filter(project=project).values_list("name", flat=True)) == [
        winner, "negative", "neutral"]
    carrying = [i for i in Item.objects.filter(project=project)
                if winner in (*i.proposed_labels, *i.final_labels, *i.llm_votes, i.model_label)]
    assert len(carrying) == ITEMS
    assert Review.objects.filter(project=project, action=ReviewAction.RELABEL).count() == ITEMS


@contextmanager
def queued_on(table, waiters):
    """PostgreSQL: hold ``table`` exclusively until ``waiters`` other sessions wait for a lock, then let them all go.

    Requests released together by a barrier still pass through session and access checks at their own pace; holding
    the table makes them meet at their first read of it, so the check-then-insert window really overlaps.
    """
    if connection.vendor != "postgresql":
        # SQLite's IMMEDIATE transactions take the database's write lock at BEGIN: the requests queue there anyway.
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        wait_for(lambda: lock_waiters() >= waiters, what=f"{waiters} requests queueing on {table}", interval=0.01)


def lock_waiters() -> int:
    """PostgreSQL: how many sessions of the test database wait for a lock now."""
    with connection.cursor() as cursor:
        # The statistics views keep one snapshot per transaction unless it is cleared.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def post_as(user, url, data):
    """A POST by ``user`` from a client of its own, to run in a thread."""
    def post():
        client = Client()
        client.force_login(user)
        return client.post(url, data)
    return post


CREATES = {
    "label": ("labels", Label, {"name": "Neutral", "color": "#112233"}, "There is already a label called 'Neutral'"),
    "dimension": ("attributes", AttributeDimension, {"name": "topic", "values": "sport\nfinance"},
                  "There is already a dimension called 'topic'"),
}


@pytest.mark.parametrize("kind", CREATES)
def test_two_leads_creating_the_same_name_at_once_get_the_form_error_not_a_500(transactional_db, kind):
    page, model, data, error = CREATES[kind]
    ana, ben = make_user("ana"), make_user("ben")
    project = make_project(lead=ana)
    add_member(project, ben, role=Role.LEAD)
    url = reverse(page, args=[project.id])
    with queued_on(model._meta.db_table, waiters=2):
        finish = started_at_once(post_as(ana, url, data), post_as(ben, url, data))
    responses = finish()
    assert sorted(r.status_code for r in responses) == [200, 302]
    refused = next(r for r in responses if r.status_code == 200).content.decode()
    assert error in refused.replace("&#x27;", "'")
    assert model.objects.filter(project=project, name=data["name"]).count() == 1


def test_a_rename_waiting_for_an_item_under_review_lets_that_review_ask_for_a_round(busy):
    """A review holds its item, then (when a round is due) updates the project row; a rename that held the project row
    while it waits for that item would deadlock with it, so the schema's lock must be another one."""
    if connection.vendor != "postgresql":
        pytest.skip("row-lock order is PostgreSQL's; SQLite runs one writing transaction at a time")
    project, lead = busy
    annotator = make_user("annotator")
    add_member(project, annotator)
    item = next(i for i in Item.objects.filter(project=project).order_by("id") if i.proposed_labels == ["positive"])
    positive = label(project, "positive")

    def rename_to_beta():  # a deadlock fails the test here, naming this call
        return schema.label_update(label=positive, user=lead, name="beta", hotkey=positive.hotkey).name

    with transaction.atomic():
        item_review(project=project, item_id=item.pk, user=annotator, action="accept", expected_version=item.version)
        finish = started_at_once(rename_to_beta)
        wait_for(lambda: lock_waiters() >= 1, what="the rename waiting for the item under review", interval=0.01)
        # What item_review's selection_maybe_schedule does when a round is due, at the worst moment.
        selection_request_round(project.pk, force=True)
    assert finish() == ["beta"]
    item.refresh_from_db()
    assert (item.status, item.final_labels) == (Status.ACCEPTED, ["beta"])
    assert project_items_with_unknown_labels(project=project).count == 0
