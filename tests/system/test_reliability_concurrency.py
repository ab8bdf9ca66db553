"""Many reviewers at once, through the real views: 32 annotators in threads, each with its own database connection and
browser session, drain one queue; and two people save the same item at the same moment.
"""
import re
from collections import Counter

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Item, Review, ReviewAction, Status
from tests.support.concurrency import at_once
from tests.support.factories import add_member, make_item, make_project, make_user

REVIEWERS = 32
ITEMS = 96
FORM = re.compile(r'action="[^"]*/queue/items/(\d+)/".*?name="version" value="(\d+)"', re.S)


def in_threads(target, args_list):
    """``target(*args)`` for every (key, *args) at the same moment; the results by key."""
    results = at_once(*(lambda args=args: target(*args[1:]) for args in args_list))
    return {args[0]: result for args, result in zip(args_list, results)}


@pytest.fixture
def crowd(transactional_db):
    project = make_project(lead=make_user("lead"))
    users = [make_user(f"reviewer{i}") for i in range(REVIEWERS)]
    for user in users:
        add_member(project, user)
    items = [make_item(project, f"Text number {i} for review", ambiguity=(i % 11) / 11) for i in range(ITEMS)]
    return project, users, items


def test_thirty_two_reviewers_never_share_an_item_and_lose_no_review(crowd):
    project, users, items = crowd

    def review_until_empty(user):
        client = Client()
        client.force_login(user)
        shown, saved = [], []
        while True:
            page = client.get(reverse("queue", args=[project.id])).content.decode()
            match = FORM.search(page)
            if match is None:
                return shown, saved
            item_id, version = int(match[1]), match[2]
            shown.append(item_id)
            response = client.post(reverse("queue_review", args=[project.id, item_id]),
                                   {"action": "accept", "version": version})
            if response.status_code == 302:
                saved.append(item_id)

    results = in_threads(review_until_empty, [(u.username, u) for u in users])
    shown = Counter(pk for s, _ in results.values() for pk in s)
    saved = [pk for _, s in results.values() for pk in s]
    assert set(shown.values()) == {1}, "an item was handed to two reviewers"
    assert sorted(saved) == sorted(i.pk for i in items)
    per_item = Counter(Review.objects.filter(action=ReviewAction.ACCEPT).values_list("item_id", flat=True))
    assert sorted(per_item) == sorted(i.pk for i in items) and set(per_item.values()) == {1}
    assert set(Item.objects.values_list("status", flat=True)) == {Status.ACCEPTED}
    assert sum(1 for name, (s, _) in results.items() if s) > REVIEWERS // 2  # the work really was shared


def test_two_people_saving_one_item_at_once_one_wins_and_the_other_is_told(transactional_db):
    project = make_project(lead=make_user("lead"))
    ana, ben = make_user("ana"), make_user("ben")
    add_member(project, ana)
    add_member(project, ben)
    item = make_item(project, "The original text")

    def save(user, text):
        client = Client()
        client.force_login(user)
        url = reverse("queue_review", args=[project.id, item.pk])
        response = client.post(url, {"action": "edit", "version": item.version, "text": text,
                                     "labels": ["negative"]}, follow=True)
        return response.content.decode()

    pages = in_threads(save, [("ana", ana, "Ana's edit"), ("ben", ben, "Ben's edit")])
    item.refresh_from_db()
    winner = "ana" if item.text == "Ana's edit" else "ben"
    loser = "ben" if winner == "ana" else "ana"
    assert item.text in ("Ana's edit", "Ben's edit") and item.version == 2
    assert "changed by someone else" in pages[loser] and "your change was not saved" in pages[loser]
    edits = list(Review.objects.filter(item=item).values_list("user__username", "after__text"))
    assert edits == [(winner, item.text)]  # the loser's text is nowhere: refused, not silently overwritten
