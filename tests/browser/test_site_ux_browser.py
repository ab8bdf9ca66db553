"""Issue 18 in a real browser: no lost edit, the guidelines panel and its key, toasts that never move the item, label
colours, the tabs on one line at 1280 px, the error pages, dark mode and the queue on a 390 px phone."""
import pytest

from annotation.models import Item, Label, Review, ReviewAction, Status
from tests.support.factories import add_member, make_item, make_project, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team():
    lead = make_user("lead")
    project = make_project(lead=lead, name="Questions", labels=("location", "description", "number"),
                           guidelines="**Label the answer type**, not the topic.\n\n- *location*: a place\n"
                                      "- see [the TREC notes](https://cogcomp.seas.upenn.edu/Data/QA/QC/)\n\n"
                                      "<script>window.__pwned=1</script>")
    Label.objects.filter(project=project, name="location").update(description="Where something **is**.")
    annotator = make_user("ann")
    add_member(project, annotator)
    return project, lead, annotator


def open_queue(page, live_server, project):
    page.goto(f"{live_server.url}/projects/{project.id}/queue/")
    page.wait_for_selector("#queue-item:focus, #queue-empty:focus, #review-form input[name=labels]:focus")


def press_and_wait(page, key):
    """Press a key that swaps the panel; wait for the new panel."""
    page.evaluate("document.querySelector('#queue-panel').dataset.old = '1'")
    page.keyboard.press(key)
    page.wait_for_selector("#queue-panel:not([data-old])")


def test_an_edit_of_an_unlabelled_item_keeps_its_text_until_the_label_is_picked(team, new_page, live_server):
    project, _, ann = team
    item = make_item(project, "What is the capital of Peru?", proposed=(), ambiguity=0.9)
    make_item(project, "How many legs has a spider?", ambiguity=0.1)
    page = new_page(ann)
    open_queue(page, live_server, project)
    page.keyboard.press("e")
    page.keyboard.press("Control+A")
    page.keyboard.type("What is the capital city of Peru?")
    page.keyboard.press("Enter")

    # Nothing was sent: the text is still there, the page asks for the label and waits on the labels.
    assert page.input_value("#edit-text") == "What is the capital city of Peru?"
    assert page.is_visible("#label-needed")
    assert page.evaluate("document.activeElement.name") == "labels"
    assert Review.objects.filter(item=item).count() == 0

    # The label's key picks it and returns to the text, where Enter saves the edit with it.
    page.keyboard.press("1")
    assert page.evaluate("document.activeElement.id") == "edit-text"
    assert page.is_hidden("#label-needed")
    press_and_wait(page, "Enter")
    page.wait_for_selector("#queue-item:focus")
    item.refresh_from_db()
    assert (item.text, item.final_labels, item.status) == ("What is the capital city of Peru?", ["location"],
                                                           Status.ACCEPTED)
    assert Review.objects.get(item=item).action == ReviewAction.EDIT


def test_the_server_keeps_a_refused_edit_and_the_page_asks_for_the_label(team, new_page, live_server):
    """The browser's own check bypassed (the edit button clicked by a script): the server's answer keeps the text."""
    project, _, ann = team
    item = make_item(project, "original", proposed=())
    page = new_page(ann)
    open_queue(page, live_server, project)
    page.keyboard.press("e")
    page.keyboard.type(" and more")
    page.evaluate("document.querySelector('#queue-panel').dataset.old = '1';"
                  "document.querySelector('#edit-save').click()")
    page.wait_for_selector("#queue-panel:not([data-old])")
    assert page.input_value("#edit-text") == "original and more"
    assert "Pick a label first" in page.inner_text("#messages")
    assert page.evaluate("document.activeElement.name") == "labels"
    page.keyboard.press("2")
    assert page.evaluate("document.activeElement.id") == "edit-text"
    press_and_wait(page, "Enter")
    item.refresh_from_db()
    assert (item.text, item.final_labels) == ("original and more", ["description"])


def test_the_guidelines_show_beside_the_item_and_g_hides_them_for_this_browser(team, new_page, live_server):
    project, _, ann = team
    make_item(project, "Where is Lima?")
    page = new_page(ann)
    open_queue(page, live_server, project)
    assert page.is_visible("#guidelines-body")
    assert page.inner_text("#guidelines strong") == "Label the answer type"
    assert page.get_attribute("#guidelines a[href^='https://cogcomp']", "rel") == "noopener noreferrer"
    assert "<script>window.__pwned=1</script>" in page.inner_text("#guidelines")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert "Where something is." in page.inner_text("#guidelines .label-guide")
    guide_x = page.evaluate("document.querySelector('#guidelines').getBoundingClientRect().left")
    item_right = page.evaluate("document.querySelector('#queue-item').getBoundingClientRect().right")
    assert guide_x > item_right  # beside the item, not below it

    page.keyboard.press("g")
    assert page.is_hidden("#guidelines-body")
    assert page.get_attribute("#guidelines-toggle", "aria-expanded") == "false"
    open_queue(page, live_server, project)
    assert page.is_hidden("#guidelines-body")
    page.click("#guidelines-toggle")
    assert page.is_visible("#guidelines-body")
    open_queue(page, live_server, project)
    assert page.is_visible("#guidelines-body")


def test_a_message_is_a_toast_that_does_not_move_the_item(team, new_page, live_server):
    project, _, ann = team
    for i in range(3):
        make_item(project, f"question {i}", ambiguity=1 - i / 10)
    page = new_page(ann)
    open_queue(page, live_server, project)
    top = page.evaluate("document.querySelector('#queue-item').getBoundingClientRect().top")
    press_and_wait(page, "a")
    assert "Accepted item" in page.inner_text("#messages")
    assert page.get_attribute("#messages", "aria-live") == "polite"
    assert page.evaluate("document.querySelector('#queue-item').getBoundingClientRect().top") == top
    assert page.evaluate("getComputedStyle(document.querySelector('#messages')).position") == "fixed"


def test_labels_have_distinct_colours_and_the_picked_one_stands_out(team, new_page, live_server):
    project, _, ann = team
    make_item(project, "Where is Lima?", proposed=("location",))
    page = new_page(ann)
    open_queue(page, live_server, project)
    borders = page.evaluate("Array.from(document.querySelectorAll('.label-picker label'))"
                            ".map(l => getComputedStyle(l).borderTopColor)")
    assert len(set(borders)) == 3
    picked = page.evaluate("getComputedStyle(document.querySelector('.label-picker input:checked + label'))"
                           ".backgroundColor")
    other = page.evaluate("getComputedStyle(document.querySelector('.label-picker input:not(:checked) + label'))"
                          ".backgroundColor")
    assert picked == borders[0] and other != picked
    assert page.is_visible(".keys")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert page.evaluate("document.querySelector('.keys').getBoundingClientRect().bottom <= window.innerHeight")


def test_the_lead_tabs_fit_on_one_line_at_1280_and_mark_the_current_page(team, new_page, live_server, screenshot):
    project, lead, _ = team
    page = new_page(lead)
    for path in ("queue/", "settings/", "dashboard/"):
        page.goto(f"{live_server.url}/projects/{project.id}/{path}")
        tops = page.evaluate("Array.from(document.querySelectorAll('.tabs a')).map(a => a.getBoundingClientRect().top)")
        assert len(tops) >= 12 and len(set(tops)) == 1
        assert page.evaluate("(t => t.scrollWidth <= t.clientWidth)(document.querySelector('.tabs'))")
        assert page.locator(".tabs a[aria-current=page]").count() == 1
    assert page.inner_text(".tabs a[aria-current=page]") == "Dashboard"
    screenshot(page, "tabs-lead-1280")


def test_the_error_pages_are_in_the_site_layout(team, new_page, live_server, settings):
    project, _, ann = team
    page = new_page(ann)
    response = page.goto(f"{live_server.url}/projects/{project.id}/dashboard/")
    assert response.status == 403
    assert page.inner_text("h1") == "You cannot open this page"
    assert page.is_visible(".topbar .brand") and ann.username in page.inner_text(".topbar")
    page.click("text=Your projects")
    page.wait_for_url(f"{live_server.url}/")

    settings.DEBUG = False
    response = page.goto(f"{live_server.url}/projects/{project.id}/no-such-page/")
    assert response.status == 404
    assert page.inner_text("h1") == "This page does not exist"
    assert page.is_visible(".topbar .brand")
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("favicon.svg")


def test_dark_mode_follows_the_system_and_the_queue_fits_a_phone(team, new_page, live_server, screenshot):
    project, _, ann = team
    make_item(project, "What is the longest river in South America, and how long is it in kilometres?",
              proposed=("location",), model_label="number", model_scores={"p_llm_wrong": 0.4, "entropy": 0.9})
    page = new_page(ann, color_scheme="dark", viewport={"width": 390, "height": 844})
    open_queue(page, live_server, project)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for selector in ("#queue-item", "#accept", ".label-picker"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    screenshot(page, "queue-dark-390x844")
    assert Item.objects.get(text__startswith="What is the longest").claimed_by == ann
