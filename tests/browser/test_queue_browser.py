"""The review queue in a real browser: keyboard-only reviewing, two annotators at once, hostile text, two screen sizes,
and the same page without JavaScript."""
import pytest

from annotation.models import Item, Review, ReviewAction, Status
from tests.support.factories import add_member, make_item, make_project, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = ['<script>window.__pwned=1</script>', '<img src=x onerror="window.__pwned=1">']


@pytest.fixture
def team():
    lead = make_user("lead")
    project = make_project(lead=lead, name="Movie reviews")
    annotators = [make_user("ann"), make_user("bea")]
    for user in annotators:
        add_member(project, user)
    return project, lead, annotators


def open_queue(page, live_server, project):
    page.goto(f"{live_server.url}/projects/{project.id}/queue/")
    page.wait_for_selector("#queue-item:focus, #queue-empty:focus")


def shown_item(page) -> int | None:
    value = page.evaluate("document.querySelector('#queue-item')?.dataset.item ?? null")
    return int(value) if value else None


def press_and_wait(page, key):
    """Press a key that swaps the panel; wait for the new panel and return the item it shows."""
    page.evaluate("document.querySelector('#queue-panel').dataset.old = '1'")
    page.keyboard.press(key)
    # Selectors, not wait_for_function: Playwright evaluates its expression with eval, which the page's
    # Content-Security-Policy refuses.
    page.wait_for_selector("#queue-panel:not([data-old])")
    page.wait_for_selector("#queue-item:focus, #queue-empty:focus")
    return shown_item(page)


def test_an_annotator_reviews_ten_items_with_the_keyboard_only(team, new_page, live_server, screenshot):
    project, _, (ann, _) = team
    items = [make_item(project, f"Review number {i}: the plot was thin but the cast shone.", proposed=("positive",),
                       ambiguity=1 - i / 20, llm_confidence=0.55, route_reason="model and LLM disagree",
                       model_scores={"p_llm_label": 0.31, "margin": 0.12, "entropy": 0.9, "disagreement": True},
                       provenance={"job": 12, "conditions": {"topic": "film", "style": "terse"},
                                   "exemplar_ids": [3, 8], "model": "offline-augment"})
             for i in range(11)]
    page = new_page(ann)
    open_queue(page, live_server, project)
    assert shown_item(page) == items[0].id
    screenshot(page, "queue-1280x800")

    for expected_next in items[1:7]:
        assert press_and_wait(page, "a") == expected_next.id

    # Edit item 6: e focuses the text, typing replaces it, Enter saves.
    page.keyboard.press("e")
    assert page.evaluate("document.activeElement.id") == "edit-text"
    page.keyboard.press("Control+A")
    page.keyboard.type("An edited review: the cast shone.")
    assert page.input_value("#edit-text") == "An edited review: the cast shone."
    assert press_and_wait(page, "Enter") == items[7].id

    # Reject item 7: r focuses the reasons, a digit picks one, Enter rejects.
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.name") == "reason"
    page.keyboard.press("2")
    assert press_and_wait(page, "Enter") == items[8].id

    # Item 8 gets the other label (hotkey 2), item 9 is accepted as proposed.
    page.keyboard.press("2")
    assert page.is_checked("input[name=labels][value=negative]")
    assert press_and_wait(page, "a") == items[9].id
    assert press_and_wait(page, "a") == items[10].id

    # Undo brings item 9 back, focused; accepting it again returns to item 10.
    assert press_and_wait(page, "u") == items[9].id
    assert "Undone" in page.inner_text("#messages")
    assert press_and_wait(page, "a") == items[10].id
    assert page.inner_text("#queue-progress").count("10") >= 1

    edited, rejected, relabelled = (Item.objects.get(pk=items[i].pk) for i in (6, 7, 8))
    assert (edited.status, edited.text) == (Status.ACCEPTED, "An edited review: the cast shone.")
    assert (rejected.status, Review.objects.get(item=rejected, action=ReviewAction.REJECT).reason) == (
        Status.REJECTED, "low_quality")
    assert relabelled.final_labels == ["negative"]
    assert Item.objects.filter(status=Status.ACCEPTED).count() == 9
    assert Review.objects.filter(action=ReviewAction.UNDO).count() == 1
    assert Item.objects.get(pk=items[10].pk).claimed_by == ann

    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "queue-390x844")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_keys_typed_right_after_e_stay_in_the_text_when_the_swap_settles_late(team, new_page, live_server):
    """On a loaded machine htmx settles a swap well after the new item is shown and focused; typing must not care."""
    project, _, (ann, _) = team
    make_item(project, "first", ambiguity=0.9)
    make_item(project, "second", ambiguity=0.1)
    page = new_page(ann)
    open_queue(page, live_server, project)
    page.evaluate("""htmx.config.defaultSettleDelay = 300;
                     document.addEventListener('htmx:afterSettle', () => { document.body.dataset.settled = '1'; });""")
    press_and_wait(page, "a")
    page.keyboard.press("e")
    page.keyboard.press("Control+A")
    page.keyboard.type("An early")
    page.wait_for_selector("body[data-settled]")
    page.keyboard.type(" edit")
    assert page.evaluate("document.activeElement.id") == "edit-text"
    assert page.input_value("#edit-text") == "An early edit"


def test_escape_cancels_an_edit_and_a_reject(team, new_page, live_server):
    project, _, (ann, _) = team
    item = make_item(project, "keep this text")
    page = new_page(ann)
    open_queue(page, live_server, project)
    page.keyboard.press("e")
    page.keyboard.type(" and more")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "queue-item"
    assert not page.is_visible("#edit-text")
    page.keyboard.press("r")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "queue-item"
    item.refresh_from_db()
    assert (item.text, item.status) == ("keep this text", Status.NEEDS_REVIEW)


def test_two_annotators_never_see_the_same_item(team, new_page, live_server):
    project, _, annotators = team
    for i in range(8):
        make_item(project, f"shared pool item {i}", ambiguity=i / 10)
    pages = [new_page(user) for user in annotators]
    seen = [set(), set()]
    for page, mine in zip(pages, seen):
        open_queue(page, live_server, project)
        mine.add(shown_item(page))
    for _ in range(3):
        for page, mine in zip(pages, seen):
            mine.add(press_and_wait(page, "a"))
    assert len(seen[0]) == len(seen[1]) == 4
    assert seen[0].isdisjoint(seen[1])


def test_hostile_text_is_shown_as_text_and_runs_nothing(team, new_page, live_server, screenshot):
    project, lead, (ann, _) = team
    for i, text in enumerate(HOSTILE):
        make_item(project, text, ambiguity=1 - i / 10, provenance={"model": text}, model_scores={"note": text},
                  route_reason=text)
    page = new_page(ann)
    open_queue(page, live_server, project)
    assert page.inner_text("#item-text") == HOSTILE[0]
    assert press_and_wait(page, "a") is not None
    assert page.inner_text("#item-text") == HOSTILE[1]
    screenshot(page, "queue-hostile-text")
    assert page.evaluate("typeof window.__pwned") == "undefined"

    lead_page = new_page(lead)
    lead_page.goto(f"{live_server.url}/projects/{project.id}/items/")
    assert lead_page.locator("#browse-results").inner_text().count("__pwned") == 2
    lead_page.click(f"text={Item.objects.order_by('id').first().id}")
    lead_page.wait_for_selector(".item-text")
    assert lead_page.inner_text(".item-text") == HOSTILE[0]
    assert lead_page.evaluate("typeof window.__pwned") == "undefined"


def test_the_queue_works_without_javascript(team, new_page, live_server):
    project, _, (ann, _) = team
    first, second = make_item(project, "first", ambiguity=0.9), make_item(project, "second", ambiguity=0.1)
    page = new_page(ann, java_script_enabled=False)
    page.goto(f"{live_server.url}/projects/{project.id}/queue/")
    page.click("label[for^=label-] >> text=negative")
    page.click("#accept")
    page.wait_for_url(f"{live_server.url}/projects/{project.id}/queue/")
    assert page.inner_text("#item-text") == "second"
    page.click("#reject-panel summary")
    page.check("input[name=reason][value=duplicate]")
    page.click("#reject")
    page.wait_for_selector("#queue-empty")
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.final_labels, second.status) == (["negative"], Status.REJECTED)
