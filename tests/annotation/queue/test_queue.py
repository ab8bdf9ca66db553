"""The review queue's services: claims and leases, review actions, stale versions, skip, undo, overlap, progress."""
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.errors import ServiceError, StaleItem
from annotation.items.services import items_apply_overlap
from annotation.models import Item, Review, ReviewAction, Status
from annotation.queue import services as queue
from tests.support.factories import add_member, make_item, make_project, make_user


@pytest.fixture
def second(project):
    """A second annotator of the project."""
    user = make_user("second")
    add_member(project, user)
    return user


def review(project, user, item, action="accept", **kwargs):
    item.refresh_from_db()
    return queue.item_review(project=project, item_id=item.id, user=user, action=action,
                             expected_version=item.version, **kwargs)


def expire_leases():
    Item.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_it_serves_the_most_ambiguous_first_then_unscored_items_by_id(project, annotator):
    unscored = make_item(project)
    low = make_item(project, ambiguity=0.2)
    high = make_item(project, ambiguity=0.9)
    make_item(project, status=Status.PROPOSED, ambiguity=1.0)
    make_item(project, ambiguity=1.0, archived_at=timezone.now())
    order = []
    for _ in range(3):
        item = queue.queue_claim(project=project, user=annotator)
        order.append(item.id)
        review(project, annotator, item)
    assert order == [high.id, low.id, unscored.id]
    assert queue.queue_claim(project=project, user=annotator) is None


def test_random_checks_come_before_the_ambiguous_items_by_id(project, annotator):
    """Audits and calibration items are the certificate's evidence: served first, whatever their ambiguity."""
    high = make_item(project, ambiguity=0.9)
    audit = make_item(project, ambiguity=0.01, is_audit=True)
    calibration = make_item(project, ambiguity=0.3, is_calibration=True)
    make_item(project, status=Status.ACCEPTED, ambiguity=0.02, is_audit=True)  # decided: not in the queue
    make_item(project, ambiguity=0.02, is_calibration=True, archived_at=timezone.now())
    order = []
    while (item := queue.queue_claim(project=project, user=annotator)) is not None:
        order.append(item.id)
        review(project, annotator, item)
    assert order == [audit.id, calibration.id, high.id]


def test_a_reload_returns_the_item_already_held_and_renews_its_lease(project, annotator):
    make_item(project, ambiguity=0.5)
    make_item(project, ambiguity=0.4)
    first = queue.queue_claim(project=project, user=annotator)
    Item.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
    again = queue.queue_claim(project=project, user=annotator)
    assert again.pk == first.pk
    assert again.lease_expires_at > timezone.now() + timedelta(seconds=60)
    assert Item.objects.filter(claimed_by=annotator).count() == 1


def test_two_annotators_never_hold_the_same_item(project, annotator, second):
    make_item(project)
    make_item(project)
    a = queue.queue_claim(project=project, user=annotator)
    b = queue.queue_claim(project=project, user=second)
    assert a.pk != b.pk
    assert queue.queue_claim(project=project, user=make_user("third")) is None


def test_an_expired_lease_returns_the_item_to_the_queue(project, annotator, second):
    item = make_item(project)
    queue.queue_claim(project=project, user=annotator)
    assert queue.queue_claim(project=project, user=second) is None
    expire_leases()
    assert queue.queue_claim(project=project, user=second).pk == item.pk


def test_accept_keeps_the_proposal_logs_a_review_and_releases_the_lease(project, annotator):
    item = make_item(project, proposed=("negative",))
    queue.queue_claim(project=project, user=annotator)
    logged = review(project, annotator, item, time_spent_ms=1200)
    item.refresh_from_db()
    assert (item.status, item.final_labels, item.claimed_by, item.review_count) == (
        Status.ACCEPTED, ["negative"], None, 1)
    assert logged.action == ReviewAction.ACCEPT and logged.time_spent_ms == 1200
    assert logged.after["version"] == item.version == 2


def test_accept_with_another_label_is_logged_as_an_edit(project, annotator):
    item = make_item(project, proposed=("negative",))
    logged = review(project, annotator, item, labels=["positive"])
    item.refresh_from_db()
    assert logged.action == ReviewAction.EDIT
    assert item.final_labels == ["positive"] and item.status == Status.ACCEPTED


def test_edit_changes_the_text_and_keeps_the_old_one_in_the_log(project, annotator):
    item = make_item(project, "teh movie was great")
    logged = review(project, annotator, item, action="edit", text="the movie was great\r\n")
    item.refresh_from_db()
    assert item.text == "the movie was great"
    assert logged.action == ReviewAction.EDIT and logged.before["text"] == "teh movie was great"


def test_an_edit_that_changes_nothing_is_an_accept(project, annotator):
    item = make_item(project, "line one\nline two")
    logged = review(project, annotator, item, action="edit", text="line one\r\nline two ", labels=["positive"])
    assert logged.action == ReviewAction.ACCEPT


def test_an_accept_with_an_empty_text_field_keeps_the_text(project, annotator):
    item = make_item(project, "keep me")
    review(project, annotator, item, text="")
    item.refresh_from_db()
    assert item.text == "keep me"


def test_an_empty_edit_is_refused(project, annotator):
    item = make_item(project)
    with pytest.raises(ServiceError, match="cannot be empty"):
        review(project, annotator, item, action="edit", text="  ")


def test_a_stale_version_is_refused_and_nothing_changes(project, annotator, second):
    item = make_item(project, "original")
    seen = item.version
    review(project, second, item, action="edit", text="second's edit")
    with pytest.raises(StaleItem, match="changed by someone else"):
        queue.item_review(project=project, item_id=item.id, user=annotator, action="edit", text="mine",
                          expected_version=seen)
    item.refresh_from_db()
    assert item.text == "second's edit"
    assert Review.objects.filter(item=item, user=annotator).count() == 0


def test_saving_twice_says_it_was_already_saved(project, annotator):
    item = make_item(project)
    seen = item.version
    review(project, annotator, item)
    with pytest.raises(StaleItem, match="already saved"):
        queue.item_review(project=project, item_id=item.id, user=annotator, action="accept", expected_version=seen)


def test_a_lapsed_claim_cannot_overrule_the_new_holder(project, annotator, second):
    item = make_item(project)
    queue.queue_claim(project=project, user=annotator)
    expire_leases()
    queue.queue_claim(project=project, user=second)
    with pytest.raises(StaleItem, match="second is reviewing it now"):
        review(project, annotator, item)
    review(project, second, item)


def test_reject_needs_a_reason_and_clears_labels(project, annotator):
    item = make_item(project)
    with pytest.raises(ServiceError, match="reason"):
        review(project, annotator, item, action="reject")
    logged = review(project, annotator, item, action="reject", reason="duplicate", note="same as #3")
    item.refresh_from_db()
    assert item.status == Status.REJECTED and item.final_labels == []
    assert (logged.reason, logged.note) == ("duplicate", "same as #3")


def test_labels_are_checked_against_the_schema(project, annotator):
    item = make_item(project)
    with pytest.raises(ServiceError, match="Unknown label"):
        review(project, annotator, item, labels=["neutral"])
    with pytest.raises(ServiceError, match="one label per item"):
        review(project, annotator, item, labels=["positive", "negative"])


def test_a_multi_label_project_takes_several_labels(lead, annotator):
    project = make_project(lead=lead, labels=("sports", "politics", "tech"), multi_label=True)
    add_member(project, annotator)
    item = make_item(project, proposed=("sports",))
    review(project, annotator, item, labels=["sports", "tech"])
    item.refresh_from_db()
    assert item.final_labels == ["sports", "tech"]


def test_an_abstention_needs_a_picked_label(project, annotator):
    item = make_item(project, proposed=())
    with pytest.raises(ServiceError, match="Pick a label"):
        review(project, annotator, item)
    item.refresh_from_db()
    assert item.status == Status.NEEDS_REVIEW and item.version == 1 and item.review_count == 0


def test_another_projects_item_cannot_be_reviewed(project, annotator, outsider):
    foreign = make_item(make_project(lead=make_user("x")))
    with pytest.raises(ServiceError, match="does not exist in this project"):
        review(project, annotator, foreign)


def test_skip_releases_the_item_and_puts_it_behind_the_others(project, annotator, second):
    first = make_item(project, ambiguity=0.9)
    other = make_item(project, ambiguity=0.1)
    assert queue.queue_claim(project=project, user=annotator).pk == first.pk
    logged = review(project, annotator, first, action="skip")
    first.refresh_from_db()
    assert logged.action == ReviewAction.SKIP
    assert (first.status, first.claimed_by, first.version) == (Status.NEEDS_REVIEW, None, 1)
    assert queue.queue_claim(project=project, user=annotator).pk == other.pk
    review(project, annotator, other, action="skip")
    # Nothing else is left, so the skipped items come back, in queue order.
    assert queue.queue_claim(project=project, user=annotator).pk == first.pk


def test_a_skipped_item_goes_to_the_next_annotator_first(project, annotator, second):
    first = make_item(project, ambiguity=0.9)
    make_item(project, ambiguity=0.1)
    queue.queue_claim(project=project, user=annotator)
    review(project, annotator, first, action="skip")
    assert queue.queue_claim(project=project, user=second).pk == first.pk


def test_undo_returns_the_item_as_it_was_and_claims_it_again(project, annotator):
    item = make_item(project, "teh text", proposed=("negative",))
    nxt = make_item(project)
    queue.queue_claim(project=project, user=annotator)
    review(project, annotator, item, action="edit", text="the text", labels=["positive"])
    assert queue.queue_claim(project=project, user=annotator).pk == nxt.pk
    logged = queue.item_undo(project=project, user=annotator)
    item.refresh_from_db()
    nxt.refresh_from_db()
    assert logged.action == ReviewAction.UNDO
    assert (item.status, item.text, item.labels, item.final_labels, item.review_count) == (
        Status.NEEDS_REVIEW, "teh text", ["negative"], [], 0)
    assert item.claimed_by == annotator and nxt.claimed_by is None
    assert queue.queue_claim(project=project, user=annotator).pk == item.pk


def test_undo_again_takes_back_the_review_before(project, annotator):
    a, b = make_item(project, ambiguity=0.9), make_item(project, ambiguity=0.5)
    review(project, annotator, a)
    review(project, annotator, b, action="reject", reason="low_quality")
    assert queue.item_undo(project=project, user=annotator).item_id == b.id
    assert queue.item_undo(project=project, user=annotator).item_id == a.id
    with pytest.raises(ServiceError, match="Nothing to undo"):
        queue.item_undo(project=project, user=annotator)
    assert set(Item.objects.values_list("status", flat=True)) == {Status.NEEDS_REVIEW}
    assert Item.objects.get(pk=a.pk).claimed_by == annotator
    assert Item.objects.get(pk=b.pk).claimed_by is None


def test_undo_is_refused_when_someone_changed_the_item_since(project, annotator, lead):
    item = make_item(project)
    review(project, annotator, item)
    item.refresh_from_db()
    from annotation.items.services import item_transition
    item_transition(item=item, to=Status.NEEDS_REVIEW, action=ReviewAction.REOPEN, user=lead)
    with pytest.raises(StaleItem, match="someone changed that item"):
        queue.item_undo(project=project, user=annotator)
    item.refresh_from_db()
    assert item.claimed_by is None


def test_skips_are_not_undone(project, annotator):
    item = make_item(project)
    queue.queue_claim(project=project, user=annotator)
    review(project, annotator, item, action="skip")
    with pytest.raises(ServiceError, match="Nothing to undo"):
        queue.item_undo(project=project, user=annotator)


@pytest.fixture
def overlap_item(project):
    return make_item(project, proposed=("positive",), reviews_required=2, ambiguity=0.1)


def test_an_overlap_item_is_never_given_twice_to_one_person(project, annotator, second, overlap_item):
    assert queue.queue_claim(project=project, user=annotator).pk == overlap_item.pk
    review(project, annotator, overlap_item, labels=["negative"])
    assert queue.queue_claim(project=project, user=annotator) is None
    expire_leases()
    assert queue.queue_claim(project=project, user=annotator) is None
    got = queue.queue_claim(project=project, user=second)
    assert got.pk == overlap_item.pk and got.status == Status.ACCEPTED


def test_a_second_opinion_is_logged_and_leaves_the_first_decision(project, annotator, second, overlap_item):
    review(project, annotator, overlap_item, labels=["negative"])
    queue.queue_claim(project=project, user=second)
    logged = review(project, second, overlap_item, labels=["positive"])
    overlap_item.refresh_from_db()
    assert (overlap_item.status, overlap_item.final_labels, overlap_item.review_count) == (
        Status.ACCEPTED, ["negative"], 2)
    assert logged.action == ReviewAction.ACCEPT  # the second reviewer kept what they were shown: the LLM's label
    assert logged.after["labels"] == ["positive"] and logged.after["second_opinion"] is True
    assert queue.queue_claim(project=project, user=make_user("third")) is None


def test_second_opinions_are_served_before_new_items(project, annotator, second, overlap_item):
    review(project, annotator, overlap_item, action="reject", reason="unsafe")
    make_item(project, ambiguity=0.99)
    assert queue.queue_claim(project=project, user=second).pk == overlap_item.pk


def test_undo_of_a_second_opinion_withdraws_it(project, annotator, second, overlap_item):
    review(project, annotator, overlap_item)
    review(project, second, overlap_item, action="reject", reason="wrong_label")
    queue.item_undo(project=project, user=second)
    overlap_item.refresh_from_db()
    assert (overlap_item.status, overlap_item.review_count, overlap_item.claimed_by) == (Status.ACCEPTED, 1, second)
    assert queue.queue_claim(project=project, user=second).pk == overlap_item.pk


def test_one_annotator_cannot_give_an_overlap_item_all_its_reviews(project, annotator, second):
    """Issue 16 #4: accept posted three times with the new version each time recorded three reviews by one person."""
    item = make_item(project, reviews_required=3)
    review(project, annotator, item)
    for labels in (None, ["negative"]):
        with pytest.raises(ServiceError, match="already reviewed this item") as refused:
            review(project, annotator, item, labels=labels)  # the version as it is now, not a stale one
        assert not isinstance(refused.value, StaleItem)
    item.refresh_from_db()
    assert (item.status, item.review_count, item.version, item.claimed_by) == (Status.ACCEPTED, 1, 2, None)
    assert Review.objects.filter(item=item).count() == 1
    # Someone else still gives the second opinion.
    assert review(project, second, item).after["second_opinion"] is True


def test_a_second_opinion_cannot_be_given_twice_by_its_reviewer(project, annotator, second, overlap_item):
    Item.objects.filter(pk=overlap_item.pk).update(reviews_required=3)
    review(project, annotator, overlap_item)
    review(project, second, overlap_item, action="reject", reason="wrong_label")
    with pytest.raises(ServiceError, match="already reviewed this item"):
        review(project, second, overlap_item)
    overlap_item.refresh_from_db()
    assert overlap_item.review_count == 2
    assert Review.objects.filter(item=overlap_item, user=second).count() == 1


def test_an_undone_review_does_not_count_against_reviewing_again(project, annotator, second, overlap_item):
    review(project, annotator, overlap_item, labels=["negative"])
    queue.item_undo(project=project, user=annotator)
    assert review(project, annotator, overlap_item).action == ReviewAction.ACCEPT
    review(project, second, overlap_item, action="reject", reason="other")
    queue.item_undo(project=project, user=second)
    assert review(project, second, overlap_item).after["second_opinion"] is True
    overlap_item.refresh_from_db()
    assert (overlap_item.review_count, overlap_item.final_labels) == (2, ["positive"])


@pytest.fixture
def held(project, annotator):
    """An item the annotator holds in review."""
    item = make_item(project)
    assert queue.queue_claim(project=project, user=annotator).pk == item.pk
    return item


def test_skip_of_a_decided_item_is_refused_and_logs_nothing(project, annotator, held):
    """Issue 16 #7: an accepted item took three skip rows."""
    review(project, annotator, held)
    for _ in range(3):
        with pytest.raises(ServiceError, match="no longer waiting for review, so there is nothing to skip"):
            review(project, annotator, held, action="skip")
    assert list(Review.objects.filter(item=held).values_list("action", flat=True)) == [ReviewAction.ACCEPT]


def test_skip_of_an_archived_item_is_refused_and_logs_nothing(project, annotator, held):
    Item.objects.filter(pk=held.pk).update(archived_at=timezone.now())
    with pytest.raises(ServiceError, match="nothing to skip"):
        review(project, annotator, held, action="skip")
    held.refresh_from_db()
    assert held.claimed_by == annotator
    assert not Review.objects.filter(item=held).exists()


def test_skip_of_an_item_one_does_not_hold_is_refused_and_logs_nothing(project, annotator, second):
    free = make_item(project, ambiguity=0.9)
    with pytest.raises(ServiceError, match="You are not reviewing this item"):
        review(project, annotator, free, action="skip")
    queue.queue_claim(project=project, user=second)
    with pytest.raises(StaleItem, match="second is reviewing this item now"):
        review(project, annotator, free, action="skip")
    foreign = make_item(make_project(lead=make_user("x")))
    with pytest.raises(ServiceError, match="does not exist in this project"):
        review(project, annotator, foreign, action="skip")
    assert Item.objects.get(pk=free.pk).claimed_by == second
    assert not Review.objects.exists()


def test_items_apply_overlap_marks_a_stable_share(project):
    project.overlap_rate, project.overlap_k = 0.3, 3
    items = [make_item(project) for _ in range(200)]
    reviewed = items[0]
    Item.objects.filter(pk=reviewed.pk).update(review_count=1)
    ids = [item.pk for item in items]
    marked = items_apply_overlap(project=project, item_ids=ids)
    assert 35 <= marked <= 85
    assert items_apply_overlap(project=project, item_ids=ids) == 0
    assert Item.objects.filter(reviews_required=3).count() == marked
    assert set(Item.objects.values_list("reviews_required", flat=True)) == {1, 3}
    project.overlap_rate = 0
    assert items_apply_overlap(project=project, item_ids=ids) == 0


def test_progress_counts_the_queue_and_my_reviews(project, annotator, second):
    items = [make_item(project) for _ in range(5)]
    queue.queue_claim(project=project, user=second)
    review(project, annotator, items[1])
    review(project, annotator, items[2], action="reject", reason="other")
    assert queue.queue_claim(project=project, user=annotator).pk == items[3].pk
    review(project, annotator, items[3], action="skip")
    queue.item_undo(project=project, user=annotator)
    progress = queue.queue_progress(project=project, user=annotator)
    # items[2] is back (undo), items[1] stays accepted.
    assert (progress.waiting, progress.held_by_others, progress.reviewed_today, progress.last_hour) == (4, 1, 1, 1)
    assert progress.remaining == "4"


def test_progress_caps_a_huge_queue(project, annotator, monkeypatch):
    monkeypatch.setattr(queue, "PROGRESS_CAP", 3)
    # The statement is compiled once per process: compile it afresh with this cap, into a cache the test throws away,
    # so neither an earlier test's statement nor this one's leaks across tests in the same process.
    monkeypatch.setattr(queue._PROGRESS, "_compiled", {})
    for _ in range(5):
        make_item(project)
    assert queue.queue_progress(project=project, user=annotator).remaining == "3+"


def test_decided_items_without_a_review_are_not_second_opinions(project, annotator):
    make_item(project, status=Status.ACCEPTED, final_labels=["positive"])
    make_item(project, status=Status.REJECTED)
    make_item(project, status=Status.AUTO_ACCEPTED)
    assert queue.queue_claim(project=project, user=annotator) is None
    progress = queue.queue_progress(project=project, user=annotator)
    assert (progress.waiting, progress.second_opinions) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_only_a_claim_that_owns_its_transaction_commits_lazily():
    """Claims relax durability (synchronous_commit off); inside a caller's transaction they must not, since the
    caller's commit may carry writes that have to reach the disk."""
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting")
    lead, annotator = make_user("lazy-lead"), make_user("lazy-annotator")
    project = make_project(lead=lead)
    add_member(project, annotator)
    make_item(project, status=Status.NEEDS_REVIEW, ambiguity=0.5)
    seen = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert queue.queue_claim(project=project, user=annotator) is not None
    assert any("synchronous_commit" in sql for sql in seen)
    seen.clear()
    with connection.execute_wrapper(record), transaction.atomic():
        assert queue.queue_claim(project=project, user=annotator) is not None
    assert seen and not any("synchronous_commit" in sql for sql in seen)
