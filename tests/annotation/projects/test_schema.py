"""Project settings, labels and attribute dimensions: services and the lead pages."""
import pytest
from django.db import connection
from django.urls import reverse

from annotation.errors import ServiceError
from annotation.models import AttributeDimension, Item, Label, Review, ReviewAction, Status
from annotation.projects import schema
from annotation.projects.selectors import project_items_with_unknown_labels
from tests.support.factories import make_item

VISITORS = ["lead", "annotator", "outsider", "anonymous"]


def label(project, name):
    return Label.objects.get(project=project, name=name)


# --- services ---------------------------------------------------------------------------------------------------------

def test_it_creates_a_label_at_the_end(project):
    created = schema.label_create(project=project, name=" neutral ", hotkey="N", label_words=["meh"])
    assert (created.name, created.hotkey, created.label_words) == ("neutral", "n", ["meh"])
    assert created.order > label(project, "negative").order


@pytest.mark.parametrize("fields,message", [
    ({"name": "Positive"}, "already a label called"),
    ({"name": "x|y"}, "cannot contain '|'"),
    ({"name": "   "}, "needs a name"),
    ({"name": "new", "hotkey": "a"}, "review-queue key"),
    ({"name": "new", "hotkey": "U"}, "review-queue key"),
    ({"name": "new", "hotkey": "1"}, "taken by 'positive'"),
    ({"name": "new", "hotkey": "?"}, "one letter or digit"),
    ({"name": "new", "color": "red"}, "#rrggbb"),
])
def test_it_refuses_bad_labels(project, fields, message):
    with pytest.raises(ServiceError, match=message):
        schema.label_create(project=project, **fields)
    assert Label.objects.filter(project=project).count() == 2


def test_renaming_a_label_rewrites_its_items_and_logs_it(project, lead):
    seed = make_item(project, status=Status.ACCEPTED, proposed=("positive",), final_labels=["positive"],
                     llm_votes={"positive": 2, "negative": 1}, model_label="positive")
    other = make_item(project, proposed=("negative",))
    schema.label_update(label=label(project, "positive"), user=lead, name="good", hotkey="1", color="#00aa00")
    seed.refresh_from_db()
    assert (seed.proposed_labels, seed.final_labels, seed.model_label) == (["good"], ["good"], "good")
    assert seed.llm_votes == {"good": 2, "negative": 1}
    assert seed.version == 2
    review = Review.objects.get(item=seed)
    assert review.action == ReviewAction.RELABEL and review.user == lead
    assert review.before["labels"] == ["positive"] and review.after["labels"] == ["good"]
    assert "renamed" in review.note
    assert not Review.objects.filter(item=other).exists()


def test_merging_a_label_relabels_items_then_deletes_it(project, lead):
    project.multi_label = True
    project.save()
    both = make_item(project, proposed=("positive", "negative"), llm_votes={"positive": 1, "negative": 2})
    neg = make_item(project, proposed=("negative",))
    n = schema.label_merge(label=label(project, "negative"), into=label(project, "positive"), user=lead)
    assert n == 2
    both.refresh_from_db()
    neg.refresh_from_db()
    assert both.proposed_labels == ["positive"] and both.llm_votes == {"positive": 3}
    assert neg.proposed_labels == ["positive"]
    assert list(Label.objects.filter(project=project).values_list("name", flat=True)) == ["positive"]
    assert Review.objects.filter(action=ReviewAction.RELABEL).count() == 2


def test_a_label_in_use_cannot_be_deleted(project):
    make_item(project, status=Status.ACCEPTED, proposed=(), final_labels=["negative"])
    with pytest.raises(ServiceError, match="used by 1 item. Merge it"):
        schema.label_delete(label=label(project, "negative"))
    schema.label_delete(label=label(project, "positive"))
    assert list(Label.objects.filter(project=project).values_list("name", flat=True)) == ["negative"]


def test_a_label_cannot_merge_into_itself_or_another_project(project):
    other = Label.objects.exclude(project=project).first()
    for into in (label(project, "positive"), other):
        with pytest.raises(ServiceError, match="same project"):
            schema.label_merge(label=label(project, "positive"), into=into)
    assert Label.objects.filter(project=project).count() == 2


def test_a_rename_from_a_label_renamed_meanwhile_is_refused_and_changes_nothing(project, lead):
    item = make_item(project, proposed=("positive",))
    seen = label(project, "positive")
    schema.label_update(label=label(project, "positive"), user=lead, name="beta", hotkey="1")
    with pytest.raises(ServiceError, match="'positive' was renamed to 'beta' by someone else meanwhile; nothing was"):
        schema.label_update(label=seen, user=lead, name="gamma", hotkey="1")
    item.refresh_from_db()
    assert (item.proposed_labels, item.version) == (["beta"], 2)
    assert list(Label.objects.filter(project=project).values_list("name", flat=True)) == ["beta", "negative"]
    assert Review.objects.filter(item=item).count() == 1


@pytest.mark.parametrize("change", ["merge", "merge into", "delete", "rename"])
def test_a_change_to_a_label_deleted_meanwhile_is_refused(project, lead, change):
    make_item(project, proposed=("negative",))
    neutral = schema.label_create(project=project, name="neutral")
    seen = {name: label(project, name) for name in ("positive", "negative")}
    schema.label_delete(label=label(project, "neutral"))
    calls = {
        "merge": lambda: schema.label_merge(label=neutral, into=seen["positive"], user=lead),
        "merge into": lambda: schema.label_merge(label=seen["negative"], into=neutral, user=lead),
        "delete": lambda: schema.label_delete(label=neutral),
        "rename": lambda: schema.label_update(label=neutral, user=lead, name="calm"),
    }
    with pytest.raises(ServiceError, match="'neutral' was deleted or merged by someone else meanwhile"):
        calls[change]()
    assert list(Label.objects.filter(project=project).values_list("name", flat=True)) == ["positive", "negative"]
    assert Item.objects.get(project=project).proposed_labels == ["negative"]


def test_the_schema_check_finds_every_place_an_item_keeps_a_label_name(project):
    project.multi_label = True
    project.save()
    clean = make_item(project, proposed=("positive", "negative"), final_labels=["negative"],
                      llm_votes={"positive": 2}, model_label="negative|positive")
    stray = [
        make_item(project, proposed=("positive", "beta")),
        make_item(project, status=Status.ACCEPTED, final_labels=["gamma"]),
        make_item(project, llm_votes={"positive": 1, "delta": 2}),
        make_item(project, model_label="negative|omega"),
        make_item(project, proposed=("old",), archived_at=clean.created_at),
    ]
    found = project_items_with_unknown_labels(project=project)
    assert found.count == 5
    assert found.examples == [(stray[0].pk, ["beta"]), (stray[1].pk, ["gamma"]), (stray[2].pk, ["delta"]),
                              (stray[3].pk, ["omega"]), (stray[4].pk, ["old"])]
    assert project_items_with_unknown_labels(project=project, examples=2).examples == found.examples[:2]


def test_the_schema_check_is_zero_after_renames_merges_and_deletes_in_sequence(project, lead):
    make_item(project, status=Status.ACCEPTED, proposed=("positive",), final_labels=["negative"],
              llm_votes={"positive": 1, "negative": 1}, model_label="positive")
    make_item(project, proposed=("negative",))
    schema.label_update(label=label(project, "positive"), user=lead, name="good", hotkey="1")
    schema.label_create(project=project, name="neutral")
    schema.label_merge(label=label(project, "negative"), into=label(project, "neutral"), user=lead)
    schema.label_update(label=label(project, "neutral"), user=lead, name="calm")
    assert project_items_with_unknown_labels(project=project).count == 0
    assert set(Label.objects.filter(project=project).values_list("name", flat=True)) == {"good", "calm"}


def test_switching_to_single_label_is_refused_while_items_have_several(project):
    project.multi_label = True
    project.save()
    make_item(project, proposed=("positive", "negative"))
    with pytest.raises(ServiceError, match="1 item carry several labels"):
        schema.project_update(project=project, multi_label=False)
    project.refresh_from_db()
    assert project.multi_label


def test_project_update_saves_the_review_policy(project):
    schema.project_update(project=project, name="Renamed", routing_mode="threshold", review_threshold=0.3,
                          audit_rate=0.1)
    project.refresh_from_db()
    assert (project.name, project.routing_mode, project.review_threshold, project.audit_rate) == (
        "Renamed", "threshold", 0.3, 0.1)


def test_attribute_dimensions_keep_unique_clean_values(project):
    dim = schema.attribute_create(project=project, name="topic", values=[" sport", "finance", "sport", ""])
    assert dim.values == ["sport", "finance"]
    with pytest.raises(ServiceError, match="already a dimension"):
        schema.attribute_create(project=project, name="Topic", values=["x"])
    with pytest.raises(ServiceError, match="at least one value"):
        schema.attribute_update(dimension=dim, name="topic", values=["  "])
    schema.attribute_update(dimension=dim, name="style", values=["formal", "casual"])
    dim.refresh_from_db()
    assert (dim.name, dim.values) == ("style", ["formal", "casual"])


# --- pages ------------------------------------------------------------------------------------------------------------

def visitor(request, client, who):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    return client


def schema_urls(project):
    lab = label(project, "positive")
    dim = AttributeDimension.objects.create(project=project, name="topic", values=["a"])
    return {
        "project_settings": reverse("project_settings", args=[project.id]),
        "labels": reverse("labels", args=[project.id]),
        "label_edit": reverse("label_edit", args=[project.id, lab.id]),
        "label_delete": reverse("label_delete", args=[project.id, lab.id]),
        "attributes": reverse("attributes", args=[project.id]),
        "attribute_edit": reverse("attribute_edit", args=[project.id, dim.id]),
        "attribute_delete": reverse("attribute_delete", args=[project.id, dim.id]),
    }


MATRIX = [
    ("project_settings", "get", 200), ("project_settings", "post", 200),
    ("labels", "get", 200), ("labels", "post", 200),
    ("label_edit", "get", 200), ("label_edit", "post", 200),
    ("label_delete", "post", 302),
    ("attributes", "get", 200), ("attributes", "post", 200),
    ("attribute_edit", "get", 200), ("attribute_edit", "post", 200),
    ("attribute_delete", "post", 302),
]


@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("name,method,lead_status", MATRIX, ids=[f"{m[0]}-{m[1]}" for m in MATRIX])
def test_permission_matrix(request, client, project, who, name, method, lead_status):
    url = schema_urls(project)[name]
    c = visitor(request, client, who)
    response = getattr(c, method)(url, {} if method == "post" else None)
    expected = {"lead": lead_status, "annotator": 403, "outsider": 404, "anonymous": 302}[who]
    assert response.status_code == expected
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login"))


def test_settings_page_saves_and_redirects_without_js(client, lead, project):
    client.force_login(lead)
    url = reverse("project_settings", args=[project.id])
    assert "Review policy" in client.get(url).content.decode()
    data = {"name": "Sentiment v2", "description": "Say <b>how</b> they feel", "routing_mode": "budget",
            "review_budget": "0.3", "review_threshold": "0.5", "audit_rate": "0.05", "target_accuracy": "0.98",
            "retrain_every": "25", "overlap_rate": "0", "overlap_k": "2"}
    response = client.post(url, data)
    assert response.status_code == 302 and response["Location"] == url
    project.refresh_from_db()
    assert (project.name, project.review_budget, project.retrain_every) == ("Sentiment v2", 0.3, 25)


def test_settings_page_swaps_its_panel_with_htmx_and_shows_errors(client, lead, project):
    client.force_login(lead)
    url = reverse("project_settings", args=[project.id])
    response = client.post(url, {"name": "x", "review_budget": "7"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.startswith('<div id="settings-panel">') and "<html" not in body
    assert "less than or equal to 1" in body


def test_labels_page_adds_a_label_with_htmx(client, lead, project):
    client.force_login(lead)
    url = reverse("labels", args=[project.id])
    response = client.post(url, {"name": "<script>x</script>", "hotkey": "3", "color": "#112233",
                                 "label_words": "a, b"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.startswith('<div id="labels-panel">')
    assert "&lt;script&gt;x&lt;/script&gt;" in body and "<script>x</script>" not in body
    assert Label.objects.get(project=project, hotkey="3").label_words == ["a", "b"]


def test_labels_page_shows_a_clear_error_for_a_reserved_hotkey(client, lead, project):
    client.force_login(lead)
    response = client.post(reverse("labels", args=[project.id]), {"name": "neutral", "hotkey": "r",
                                                                  "color": "#112233"})
    assert response.status_code == 200
    assert "review-queue key" in response.content.decode()
    assert not Label.objects.filter(name="neutral").exists()


def test_label_edit_renames_without_js(client, lead, project):
    client.force_login(lead)
    lab = label(project, "positive")
    url = reverse("label_edit", args=[project.id, lab.id])
    assert client.get(url, headers={"HX-Request": "true"}).content.decode().startswith('<div id="labels-panel">')
    response = client.post(url, {"name": "good", "hotkey": "1", "color": "#112233", "order": "0"})
    assert response.status_code == 302
    lab.refresh_from_db()
    assert lab.name == "good"


def test_deleting_a_label_in_use_is_refused_and_offers_merge(client, lead, project):
    client.force_login(lead)
    make_item(project, proposed=("negative",))
    neg = label(project, "negative")
    url = reverse("label_delete", args=[project.id, neg.id])
    response = client.post(url, {}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "is used by 1 item" in body and "Merge its items into" in body
    assert Label.objects.filter(pk=neg.pk).exists()
    response = client.post(url, {"merge_into": label(project, "positive").id})
    assert response.status_code == 302
    assert not Label.objects.filter(pk=neg.pk).exists()
    assert Item.objects.get(project=project).proposed_labels == ["positive"]


@pytest.mark.parametrize("htmx", [False, True], ids=["no-js", "htmx"])
@pytest.mark.parametrize("merge", [False, True], ids=["delete", "merge"])
def test_a_delete_or_merge_of_a_label_deleted_meanwhile_goes_back_to_the_list(client, lead, project, merge, htmx):
    """Another lead deletes the label after this request read it and before the service looked again: the refusal
    cannot go back to the label's form (a 404 now), so it shows the list, with the message."""
    client.force_login(lead)
    neutral = schema.label_create(project=project, name="neutral")
    label_reads = []

    def delete_after_the_pages_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and "annotation_label" in sql:
            label_reads.append(sql)
            if len(label_reads) == 1:
                with connection.cursor() as cursor:
                    cursor.execute("DELETE FROM annotation_label WHERE id = %s", [neutral.pk])
        return result

    data = {"merge_into": label(project, "positive").id} if merge else {}
    headers = {"HX-Request": "true"} if htmx else {}
    with connection.execute_wrapper(delete_after_the_pages_read):
        response = client.post(reverse("label_delete", args=[project.id, neutral.id]), data, headers=headers,
                               follow=True)
    body = response.content.decode().replace("&#x27;", "'")
    assert response.status_code == 200
    assert "The label 'neutral' was deleted or merged by someone else meanwhile" in body
    if htmx:
        assert body.startswith('<div id="labels-panel">') and "Add a label" in body
    else:
        assert response.redirect_chain == [(reverse("labels", args=[project.id]), 302)]
    assert not Label.objects.filter(pk=neutral.pk).exists()


def test_attributes_pages_add_edit_delete(client, lead, project):
    client.force_login(lead)
    response = client.post(reverse("attributes", args=[project.id]), {"name": "topic", "values": "sport\nfinance"},
                           headers={"HX-Request": "true"})
    assert response.content.decode().startswith('<div id="attributes-panel">')
    dim = AttributeDimension.objects.get(project=project)
    assert dim.values == ["sport", "finance"]
    edit = reverse("attribute_edit", args=[project.id, dim.id])
    assert "<html" in client.get(edit).content.decode()
    assert client.post(edit, {"name": "topic", "values": "travel, food"}).status_code == 302
    dim.refresh_from_db()
    assert dim.values == ["travel", "food"]
    response = client.post(reverse("attribute_delete", args=[project.id, dim.id]), headers={"HX-Request": "true"})
    assert "No dimensions yet" in response.content.decode()
