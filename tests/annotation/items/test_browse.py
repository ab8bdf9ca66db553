"""The lead's item browser: filters, keyset pages, HTMX partials, the item page's history, bounded queries."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.items import selectors as browse
from annotation.models import Item, Source, Status
from annotation.queue import services as queue
from tests.support.factories import make_item, make_project, make_user

HX = {"HX-Request": "true"}


@pytest.fixture
def as_lead(client, lead):
    client.force_login(lead)
    return client


def ids(page):
    return [item.id for item in page.items]


def test_keyset_pages_walk_forward_and_back(project):
    items = [make_item(project, f"item {i}") for i in range(7)]
    newest_first = [item.id for item in reversed(items)]
    first = browse.items_browse(project=project, page_size=3)
    assert ids(first) == newest_first[:3] and first.newer is None
    second = browse.items_browse(project=project, after=first.older, page_size=3)
    assert ids(second) == newest_first[3:6] and second.newer == newest_first[3]
    last = browse.items_browse(project=project, after=second.older, page_size=3)
    assert ids(last) == newest_first[6:] and last.older is None
    back = browse.items_browse(project=project, before=last.newer, page_size=3)
    assert ids(back) == newest_first[3:6] and back.older == second.older
    back = browse.items_browse(project=project, before=back.newer, page_size=3)
    assert ids(back) == newest_first[:3] and back.newer is None


def test_filters_by_status_source_label_and_text(project, annotator):
    accepted = make_item(project, "a lovely film", proposed=("negative",))
    queue.item_review(project=project, item_id=accepted.id, user=annotator, action="accept",
                      expected_version=1, labels=["positive"])
    proposed_pos = make_item(project, "LOVELY weather", proposed=("positive",), source=Source.IMPORTED)
    make_item(project, "dreadful", proposed=("negative",), status=Status.FILTERED)
    make_item(make_project(lead=make_user("x")), "lovely elsewhere")

    assert ids(browse.items_browse(project=project, status=Status.ACCEPTED)) == [accepted.id]
    assert ids(browse.items_browse(project=project, source=Source.IMPORTED)) == [proposed_pos.id]
    # The label filter looks at the item's current labels: final if a person decided, else the LLM's proposal.
    assert ids(browse.items_browse(project=project, label="positive")) == [proposed_pos.id, accepted.id]
    assert len(browse.items_browse(project=project, label="negative").items) == 1
    assert ids(browse.items_browse(project=project, q="lovely")) == [proposed_pos.id, accepted.id]
    assert browse.items_browse(project=project, label="pos").items == []


def test_the_browse_page_and_its_htmx_partial(as_lead, project):
    make_item(project, "<script>window.__pwned=1</script>")
    make_item(project, "second item", status=Status.ACCEPTED)
    url = reverse("item_list", args=[project.id])
    body = as_lead.get(url).content.decode()
    assert "<html" in body and 'id="browse-results"' in body
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in body and "<script>window.__pwned" not in body
    body = as_lead.get(url, {"status": "accepted"}, headers=HX).content.decode()
    assert "<html" not in body and body.lstrip().startswith('<section id="browse-results"')
    assert "second item" in body and "__pwned" not in body


def test_pager_links_keep_the_filters(as_lead, project):
    for i in range(55):
        make_item(project, f"needle {i}")
    body = as_lead.get(reverse("item_list", args=[project.id]), {"q": "needle"}).content.decode()
    oldest_shown = Item.objects.order_by("-id")[49].id
    assert f'href="?q=needle&amp;after={oldest_shown}"' in body


def test_bad_filters_show_an_error_and_the_unfiltered_list(as_lead, project):
    make_item(project, "still listed")
    body = as_lead.get(reverse("item_list", args=[project.id]), {"status": "bogus"}).content.decode()
    assert "Select a valid choice" in body and "still listed" in body


def test_the_item_page_shows_its_full_history(as_lead, project, annotator):
    item = make_item(project, "teh text", provenance={"job": 3, "exemplar_ids": [1, 2]},
                     model_scores={"entropy": 0.9})
    queue.item_review(project=project, item_id=item.id, user=annotator, action="edit", expected_version=1,
                      text="the text", labels=["negative"])
    queue.item_undo(project=project, user=annotator)
    queue.item_review(project=project, item_id=item.id, user=annotator, action="reject", expected_version=3,
                      reason="duplicate", note="see #1")
    body = as_lead.get(reverse("item_detail", args=[project.id, item.id])).content.decode()
    assert body.count("<td>annotator</td>") == 3
    for shown in ("Edit", "Undo", "Reject", "duplicate see #1", "“the text” (was “teh text”)", "[1, 2]", "0.9"):
        assert shown in body


def test_browse_queries_do_not_grow_with_the_page(as_lead, project):
    url = reverse("item_list", args=[project.id])

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert as_lead.get(url, {"label": "positive"}).status_code == 200
        return len(ctx.captured_queries)

    make_item(project, claimed_by=make_user("holder"))
    few = count()
    for i in range(40):
        make_item(project, claimed_by=make_user(f"holder{i}"))
    assert count() == few
