import pytest

from annotation.items import services
from annotation.models import TRANSITIONS, AppendOnlyError, IllegalTransition, Review, ReviewAction, Status
from tests.support.factories import make_item

ALL = list(Status.values)
ILLEGAL = [(a, b) for a in ALL for b in ALL if b not in TRANSITIONS[a]]
LEGAL = [(a, b) for a in ALL for b in sorted(TRANSITIONS[a])]


@pytest.mark.parametrize("current,target", ILLEGAL)
def test_it_refuses_illegal_transitions(project, current, target):
    item = make_item(project, status=current)
    with pytest.raises(IllegalTransition):
        services.item_transition(item=item, to=target, action=ReviewAction.ROUTE)
    item.refresh_from_db()
    assert item.status == current
    assert item.version == 1
    assert not Review.objects.filter(item=item).exists()


@pytest.mark.parametrize("current,target", LEGAL)
def test_each_legal_transition_bumps_version_and_logs(project, lead, current, target):
    item = make_item(project, status=current)
    review = services.item_transition(item=item, to=target, action=ReviewAction.ROUTE, user=lead)
    item.refresh_from_db()
    assert item.status == target
    assert item.version == 2
    assert review.before["status"] == current
    assert review.after["status"] == target


def test_accepting_with_an_edit_keeps_the_old_text_in_the_log(project, annotator):
    item = make_item(project, "old text", status=Status.NEEDS_REVIEW)
    old_hash = item.content_hash
    services.item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.EDIT, user=annotator,
                             text="new text", final_labels=["negative"])
    item.refresh_from_db()
    review = Review.objects.get(item=item)
    assert (item.text, item.final_labels) == ("new text", ["negative"])
    assert item.content_hash != old_hash
    assert review.before["text"] == "old text" and review.after["text"] == "new text"
    assert item.reviewed_at is not None


def test_reviews_cannot_be_changed_or_deleted(project, lead):
    item = make_item(project)
    review = services.item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=lead)
    review.reason = "tampered"
    with pytest.raises(AppendOnlyError):
        review.save()
    with pytest.raises(AppendOnlyError):
        review.delete()
    with pytest.raises(AppendOnlyError):
        Review.objects.filter(pk=review.pk).update(reason="tampered")
    with pytest.raises(AppendOnlyError):
        Review.objects.all().delete()
    assert Review.objects.get(pk=review.pk).reason == ""


def test_content_hash_ignores_case_and_spacing(project):
    a = make_item(project, "Hello   World")
    b = make_item(project, "hello world ")
    assert a.content_hash == b.content_hash
