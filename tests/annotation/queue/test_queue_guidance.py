"""What the queue tells a reviewer (issue 18): guidelines and label descriptions as a safe Markdown subset, "why it is
here" in plain words with the raw signals under details, label colours, and no lost work when a save is refused."""
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import Item, Label, Review, ReviewAction, Status
from annotation.queue.display import PALETTE, ink_for
from synthstudio.lib.markdown import render_markdown
from tests.support.factories import make_item

HX = {"HX-Request": "true"}


@pytest.fixture
def logged_in(client, annotator):
    client.force_login(annotator)
    return client


def queue_url(project):
    return reverse("queue", args=[project.id])


def post_review(client, project, item, htmx, **data):
    item.refresh_from_db()
    return client.post(reverse("queue_review", args=[project.id, item.id]), {"version": item.version, **data},
                       headers=HX if htmx else {})


# --- The Markdown subset ---

@pytest.mark.parametrize("source, html", [
    ("plain words", "<p>plain words</p>"),
    ("**bold** and *it* and _also_", "<p><strong>bold</strong> and <em>it</em> and <em>also</em></p>"),
    ("two\nlines\n\nnext", "<p>two<br>lines</p>\n<p>next</p>"),
    ("- one\n- two\n1. first", "<ul><li>one</li><li>two</li></ul>\n<ol><li>first</li></ol>"),
    ("use `<b>*x*</b>`", "<p>use <code>&lt;b&gt;*x*&lt;/b&gt;</code></p>"),
    ("[docs](https://example.com/a_b_c*d*?x=1&y=2)",
     '<p><a href="https://example.com/a_b_c*d*?x=1&amp;y=2" rel="noopener noreferrer" target="_blank">docs</a></p>'),
    ("snake_case_name and 2*3*4", "<p>snake_case_name and 2*3*4</p>"),
])
def test_the_markdown_subset_renders_what_it_promises(source, html):
    assert render_markdown(source) == html


class Tags(HTMLParser):
    def __init__(self, html):
        super().__init__()
        self.found = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](data:text/html,<script>alert(1)</script>)",
    '[x](https://ok.example/" onmouseover="alert(1))',
    '[x](https://ok.example/"onmouseover="alert(1))',
    "**<b onclick=x>**",
    "`</code><script>x</script>`",
])
def test_no_input_adds_an_element_an_attribute_or_a_script_link(hostile):
    for tag, attrs in Tags(render_markdown(hostile)).found:
        assert tag in {"p", "br", "strong", "em", "code", "ul", "ol", "li", "a"}
        if tag == "a":
            assert set(attrs) == {"href", "rel", "target"} and attrs["href"].startswith("https://ok.example/")
        else:
            assert attrs == {}


# --- Guidelines in settings and in the queue ---

def test_a_lead_writes_guidelines_in_settings_and_reviewers_see_them_rendered_safely(client, lead, annotator,
                                                                                       project):
    client.force_login(lead)
    form = {"name": project.name, "description": "", "guidelines": "**Be strict.**\n- one\n<script>x</script>",
            "routing_mode": "target", "review_budget": 0.2, "review_threshold": 0.5, "audit_rate": 0.05,
            "target_accuracy": 0.98, "retrain_every": 50, "overlap_rate": 0, "overlap_k": 2}
    assert client.post(reverse("project_settings", args=[project.id]), form).status_code == 302
    project.refresh_from_db()
    assert project.guidelines.startswith("**Be strict.**")
    Label.objects.filter(project=project, name="positive").update(description="Praise, *even faint*.")
    make_item(project, "an item")

    client.force_login(annotator)
    body = client.get(queue_url(project)).content.decode()
    assert "<strong>Be strict.</strong>" in body and "<li>one</li>" in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body and "<script>x</script>" not in body
    assert "Praise, <em>even faint</em>." in body
    assert 'id="guidelines-toggle"' in body


def test_a_project_without_guidelines_says_so(logged_in, project):
    make_item(project, "an item")
    body = logged_in.get(queue_url(project)).content.decode()
    assert "No guidelines yet." in body and reverse("project_settings", args=[project.id]) not in body


# --- Why it is here ---

def test_why_it_is_here_names_the_labels_and_keeps_the_raw_signals_under_details(logged_in, project):
    make_item(project, "Where is the station?", proposed=("positive",), model_label="negative", llm_confidence=0.41,
              route_reason="to review: model predicts 'negative' (0.83), LLM said 'positive'",
              model_scores={"p_llm_wrong": 0.62, "entropy": 0.66, "kl_max_disagreement": 0.31})
    body = logged_in.get(queue_url(project)).content.decode()
    why = body[body.index("Why it is here"):body.index("</section>", body.index("Why it is here"))]
    assert "The model thinks this is" in why and "the LLM said" in why
    assert why.index(">negative</span>") < why.index(">positive</span>")
    assert "Chance that the LLM's label is wrong, by the model's estimate: 62%." in why
    assert "The LLM itself was only 41% sure." in why
    details = why[why.index("<details"):]
    assert "kl_max_disagreement" in details and "entropy" in details and "Routing note:" in details
    assert "kl_max_disagreement" not in why[:why.index("<details")]


def test_an_unlabelled_unscored_item_says_both_plainly(logged_in, project):
    make_item(project, "no label here", proposed=())
    body = logged_in.get(queue_url(project)).content.decode()
    assert "The LLM gave no label, so a person has to pick one." in body
    assert "The model has not scored it yet" in body
    assert "<details class=\"signals\">" not in body


# --- Label colours ---

def test_labels_with_the_default_colour_get_distinct_readable_colours_and_a_chosen_one_is_kept(logged_in, project):
    Label.objects.filter(project=project, name="negative").update(color="#ffd43b")
    make_item(project, "an item")
    body = logged_in.get(queue_url(project)).content.decode()
    assert f'data-color="{PALETTE[0]}" data-ink="#ffffff"' in body  # positive: default colour -> palette
    assert 'data-color="#ffd43b" data-ink="#111111"' in body  # negative: the lead's colour, dark text on it
    assert len(set(PALETTE)) == len(PALETTE) and all(ink_for(color) == "#ffffff" for color in PALETTE)


# --- No lost work ---

@pytest.mark.parametrize("htmx", [True, False])
def test_an_edit_without_a_label_keeps_the_typed_text_and_asks_for_the_label(logged_in, project, annotator, htmx):
    item = make_item(project, "original text", proposed=())
    logged_in.get(queue_url(project))
    response = post_review(logged_in, project, item, htmx, action="edit", text="my careful\r\nrewrite <b>")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<textarea name=\"text\" id=\"edit-text\" rows=\"4\">my careful\nrewrite &lt;b&gt;</textarea>" in body
    assert '<details id="edit-panel" class="panel" open>' in body
    assert "Pick a label first" in body and 'data-focus="labels"' in body
    assert '<p id="label-needed" class="field-error">' in body
    item.refresh_from_db()
    assert (item.text, item.status, item.claimed_by) == ("original text", Status.NEEDS_REVIEW, annotator)
    assert not Review.objects.filter(item=item).exists()

    # Picking the label and saving again stores the text that was kept.
    post_review(logged_in, project, item, htmx, action="edit", text="my careful\nrewrite <b>", labels=["negative"])
    item.refresh_from_db()
    assert (item.text, item.status, item.final_labels) == ("my careful\nrewrite <b>", Status.ACCEPTED, ["negative"])
    assert Review.objects.get(item=item).action == ReviewAction.EDIT


def test_a_refused_save_of_an_item_that_moved_on_shows_the_next_item_not_stale_input(logged_in, project, annotator):
    item, nxt = make_item(project, "first", proposed=(), ambiguity=0.9), make_item(project, "second", ambiguity=0.1)
    logged_in.get(queue_url(project))
    Item.objects.filter(pk=item.pk).update(version=item.version + 1, status=Status.REJECTED)  # someone else decided
    response = post_review(logged_in, project, Item(pk=item.pk, version=item.version), True, action="edit",
                           text="typed")
    body = response.content.decode()
    assert f'data-item="{nxt.id}"' in body and "typed" not in body and 'data-focus="labels"' not in body


def test_a_too_long_text_is_refused_and_kept(logged_in, project):
    item = make_item(project, "short")
    logged_in.get(queue_url(project))
    long_text = "x" * 20_001
    body = post_review(logged_in, project, item, True, action="edit", text=long_text,
                       labels=["positive"]).content.decode()
    assert long_text in body and "at most 20000 characters" in body
    item.refresh_from_db()
    assert item.text == "short"


def test_the_queue_page_costs_the_same_queries_with_guidelines_and_many_labels(logged_in, project):
    make_item(project, "an item", model_label="negative", model_scores={"p_llm_wrong": 0.5})

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert logged_in.get(queue_url(project)).status_code == 200
        return len(ctx.captured_queries)

    before = count()
    project.guidelines = "**Rules**\n" + "- a rule\n" * 200
    project.save(update_fields=["guidelines"])
    Label.objects.bulk_create(Label(project=project, name=f"extra {i}", description=f"*desc* {i}", order=10 + i)
                              for i in range(20))
    assert count() == before
