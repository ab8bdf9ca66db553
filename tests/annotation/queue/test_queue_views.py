"""The queue page and its actions over HTTP: full pages and HTMX partials, no-JS redirects, escaping, query counts."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import Item, Review, ReviewAction, Status
from tests.support.factories import add_member, make_item, make_project


@pytest.fixture
def logged_in(client, annotator):
    client.force_login(annotator)
    return client


HX = {"HX-Request": "true"}


def queue_url(project):
    return reverse("queue", args=[project.id])


def act(client, project, item, action, htmx=False, **data):
    item.refresh_from_db()
    payload = {"action": action, "version": item.version, **data}
    return client.post(reverse("queue_review", args=[project.id, item.id]), payload, headers=HX if htmx else {})


def test_a_calibration_item_says_so(logged_in, project, annotator):
    make_item(project, "A random pick", is_calibration=True)
    body = logged_in.get(queue_url(project)).content.decode()
    assert "A random pick" in body and "calibration sample" in body and "audit sample" not in body


def test_the_queue_page_shows_the_claimed_item_with_its_keys(logged_in, project, annotator):
    item = make_item(project, "Is this a good movie?", llm_confidence=0.62, route_reason="LLM and model disagree",
                     model_scores={"margin": 0.12345, "disagreement": True, "note": "<b>raw</b>"},
                     provenance={"job": 7, "conditions": {"topic": "film"}, "model": "gpt-x"}, is_audit=True)
    response = logged_in.get(queue_url(project))
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    assert "Is this a good movie?" in body
    assert Item.objects.get(pk=item.pk).claimed_by == annotator
    assert "LLM and model disagree" in body and "0.123" in body and "audit sample" in body
    assert "&lt;b&gt;raw&lt;/b&gt;" in body and "<b>raw</b>" not in body
    assert "{&quot;topic&quot;: &quot;film&quot;}" in body and "gpt-x" in body
    assert "<kbd>1</kbd> positive" in body and "<kbd>a</kbd>" in body
    assert 'type="radio" name="labels"' in body


def test_the_queue_page_with_htmx_is_the_panel_only(logged_in, project):
    make_item(project, "hello there")
    response = logged_in.get(queue_url(project), headers=HX)
    body = response.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<section id="queue-panel"')
    assert 'id="queue-progress" class="counts progress" hx-swap-oob="true"' in body


def test_a_multi_label_project_gets_checkboxes(logged_in, project):
    project.multi_label = True
    project.save(update_fields=["multi_label"])
    make_item(project)
    assert 'type="checkbox" name="labels"' in logged_in.get(queue_url(project)).content.decode()


def test_an_empty_queue_says_so(logged_in, project):
    body = logged_in.get(queue_url(project)).content.decode()
    assert "Nothing to review right now" in body


def test_item_text_is_escaped(logged_in, project):
    make_item(project, '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">')
    body = logged_in.get(queue_url(project)).content.decode()
    assert "<script>window.__pwned" not in body and "<img src=x" not in body
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in body


def test_accept_without_htmx_redirects_to_the_queue(logged_in, project):
    item = make_item(project, "keep this text")
    response = act(logged_in, project, item, "accept", labels=["negative"])
    assert response.status_code == 302 and response["Location"] == queue_url(project)
    item.refresh_from_db()
    assert (item.status, item.final_labels, item.text) == (Status.ACCEPTED, ["negative"], "keep this text")
    assert "Saved your edit of item" in logged_in.get(queue_url(project)).content.decode()


def test_accept_with_htmx_returns_the_next_item_and_counters(logged_in, project, annotator):
    first, nxt = make_item(project, "first one", ambiguity=0.9), make_item(project, "next one", ambiguity=0.1)
    logged_in.get(queue_url(project))
    response = act(logged_in, project, first, "accept", htmx=True, labels=["positive"], time_spent_ms="900")
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert "next one" in body and "first one" not in body
    assert 'id="messages" class="toasts" aria-live="polite" hx-swap-oob="innerHTML"' in body
    assert f"Accepted item {first.id}" in body
    assert "<dt>You, today</dt><dd>1</dd>" in body
    assert Review.objects.get(item=first, action=ReviewAction.ACCEPT).time_spent_ms == 900
    assert Item.objects.get(pk=nxt.pk).claimed_by == annotator


def test_edit_reject_and_skip_over_http(logged_in, project):
    a, b, c = (make_item(project, f"text {i}", ambiguity=1 - i / 10) for i in range(3))
    act(logged_in, project, a, "edit", text="text zero, fixed", labels=["positive"])
    act(logged_in, project, b, "reject", reason="low_quality", note="garbled")
    logged_in.get(queue_url(project))  # claims c, the item left: only the item one holds can be skipped
    act(logged_in, project, c, "skip")
    a.refresh_from_db(), b.refresh_from_db(), c.refresh_from_db()
    assert (a.text, a.status) == ("text zero, fixed", Status.ACCEPTED)
    assert b.status == Status.REJECTED and Review.objects.get(item=b, action="reject").note == "garbled"
    assert c.status == Status.NEEDS_REVIEW and Review.objects.filter(item=c, action="skip").exists()


def test_reject_without_a_reason_keeps_the_item_and_says_why(logged_in, project):
    item = make_item(project, "keep me")
    logged_in.get(queue_url(project))
    response = act(logged_in, project, item, "reject", htmx=True)
    body = response.content.decode()
    assert "Pick a reason for rejecting the item." in body and "keep me" in body
    item.refresh_from_db()
    assert item.status == Status.NEEDS_REVIEW


def test_a_stale_form_is_refused_with_a_message(logged_in, project, annotator, lead):
    item = make_item(project, "old text")
    Item.objects.filter(pk=item.pk).update(version=5)
    response = logged_in.post(reverse("queue_review", args=[project.id, item.id]),
                              {"action": "edit", "version": 1, "text": "new text"}, headers=HX)
    assert "changed by someone else" in response.content.decode()
    item.refresh_from_db()
    assert item.text == "old text"


def test_undo_with_and_without_htmx(logged_in, project):
    item = make_item(project, "undo me")
    act(logged_in, project, item, "accept")
    response = logged_in.post(reverse("queue_undo", args=[project.id]), headers=HX)
    body = response.content.decode()
    assert "undo me" in body and f"Undone: item {item.id} is back with you." in body
    assert Item.objects.get(pk=item.pk).status == Status.NEEDS_REVIEW
    response = logged_in.post(reverse("queue_undo", args=[project.id]))
    assert response.status_code == 302
    assert "Nothing to undo." in logged_in.get(queue_url(project)).content.decode()


def test_accept_posted_three_times_on_an_overlap_item_is_one_review_and_two_refusals(logged_in, project, annotator):
    item = make_item(project, "overlap me", reviews_required=3)
    responses = [act(logged_in, project, item, "accept", htmx=True) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert f"Accepted item {item.id}" in responses[0].content.decode()
    for response in responses[1:]:
        assert "You have already reviewed this item" in response.content.decode()
    assert Review.objects.filter(item=item, user=annotator).count() == 1
    assert Item.objects.get(pk=item.pk).review_count == 1


def test_skip_of_a_decided_item_over_http_is_refused_with_a_message(logged_in, project):
    item = make_item(project, "decided")
    act(logged_in, project, item, "accept")
    response = act(logged_in, project, item, "skip")
    assert response.status_code == 302
    assert "nothing to skip" in logged_in.get(queue_url(project)).content.decode()
    assert list(Review.objects.filter(item=item).values_list("action", flat=True)) == [ReviewAction.ACCEPT]


def test_a_get_on_an_action_url_is_not_allowed(logged_in, project):
    item = make_item(project)
    assert logged_in.get(reverse("queue_review", args=[project.id, item.id])).status_code == 405
    assert logged_in.get(reverse("queue_undo", args=[project.id])).status_code == 405


def queries_for(client, request):
    with CaptureQueriesContext(connection) as ctx:
        assert request(client).status_code in (200, 302)
    return len(ctx.captured_queries)


@pytest.mark.parametrize("htmx", [False, True])
def test_page_and_action_query_counts_do_not_grow_with_the_queue(logged_in, lead, annotator, htmx):
    headers = HX if htmx else {}

    def measure(n_items):
        project = make_project(lead=lead, labels=("a1", "b2", "c3"))
        add_member(project, annotator)
        for i in range(n_items):
            item = make_item(project, proposed=("a1",), ambiguity=i / n_items, model_scores={"margin": 0.1},
                             provenance={"job": i, "conditions": {"topic": "x"}})
            Review.objects.create(item=item, project=project, user=lead, action=ReviewAction.ROUTE)
        claim = queries_for(logged_in, lambda c: c.get(queue_url(project), headers=headers))
        reload = queries_for(logged_in, lambda c: c.get(queue_url(project), headers=headers))
        item = Item.objects.get(project=project, claimed_by=annotator)
        action = queries_for(logged_in, lambda c: c.post(reverse("queue_review", args=[project.id, item.id]),
                                                          {"action": "accept", "version": item.version},
                                                          headers=headers))
        return claim, reload, action

    small = measure(3)
    assert small == measure(60)
    # Next item: session, user, project, membership, the claim (one statement, plus its savepoint and, on PostgreSQL,
    # its SET LOCAL), the labels and the counters (one statement).
    assert small[0] == small[1] <= 10
    # A review action: access checks, the versioned write and its Review row, the retraining trigger (2 queries), and
    # with HTMX the next claim and the counters.
    assert small[2] <= 18
