"""What the API does beyond access: bulk create (all or nothing, errors per index, the import's duplicate rules),
keyset paging with an opaque cursor, the queue's stale-edit refusal, the streamed export, tokens, sessions, limits."""
import json

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Item, Status
from synthstudio.api import tokens
from synthstudio.api.models import ApiToken
from tests.api.conftest import ApiClient, token_for
from tests.support.factories import make_item


def bulk(client, project, items, **extra):
    return client.post(f"projects/{project.id}/items/bulk", json={"items": items, **extra})


# --- Bulk create ------------------------------------------------------------------------------------------------------

def test_bulk_create_stores_every_item_with_the_imports_rules(as_lead, project):
    response = bulk(as_lead, project, [
        {"text": "plain pool item"},
        {"text": "a gold seed", "labels": ["positive"]},
        {"text": "the llm said so", "llm_labels": "negative", "llm_confidence": 0.75, "extra": {"origin": "crm"}},
    ])
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 3, "duplicates": 0, "duplicate_rows": []}
    items = {i.text: i for i in Item.objects.filter(project=project)}
    assert items["plain pool item"].status == Status.PROPOSED
    assert (items["a gold seed"].status, items["a gold seed"].final_labels) == (Status.ACCEPTED, ["positive"])
    llm = items["the llm said so"]
    assert (llm.proposed_labels, llm.llm_confidence, llm.extra) == (["negative"], 0.75, {"origin": "crm"})


def test_bulk_create_with_one_bad_item_stores_nothing_and_names_each_bad_index(as_lead, project):
    response = bulk(as_lead, project, [
        {"text": "fine"}, {"text": "   "}, {"text": "fine too", "labels": ["nonexistent"]},
        {"text": "too sure", "llm_labels": ["positive"], "llm_confidence": 1.5},
    ])
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "text"), (2, "labels"), (3, "llm_confidence")]
    assert "unknown label 'nonexistent'" in errors[1]["message"]
    assert not Item.objects.filter(project=project).exists()


@pytest.mark.parametrize("text", ["nul \x00 inside", "lone \ud800 surrogate"])
def test_text_the_database_cannot_store_is_refused_before_anything_is_written(as_lead, project, text):
    body = json.dumps({"items": [{"text": "fine"}, {"text": "ok", "extra": {"note": text}}]})  # \u escapes
    response = as_lead.call("post", f"projects/{project.id}/items/bulk", data=body, content_type="application/json")
    assert response.status_code == 422 and "cannot be stored" in json.dumps(response.json())
    assert not Item.objects.filter(project=project).exists()


def test_a_nul_in_a_query_parameter_is_refused_with_422(as_lead, project):
    response = as_lead.get(f"projects/{project.id}/items", data={"q": "a\x00b"})
    assert response.status_code == 422 and "parameters.q" in response.json()["detail"]


def test_bulk_create_skips_or_keeps_duplicates_within_the_list_and_against_the_project(as_lead, project):
    make_item(project, "Already here")
    items = [{"text": "new text"}, {"text": "NEW   text"}, {"text": "already here"}]
    response = bulk(as_lead, project, items)
    assert response.json() == {"created": 1, "duplicates": 2, "duplicate_rows": [
        {"index": 1, "duplicate_of": "index 0"},
        {"index": 2, "duplicate_of": f"item #{Item.objects.get(text='Already here').id}"}]}
    kept = bulk(as_lead, project, [{"text": "again"}, {"text": "again"}], duplicates="keep")
    assert kept.json()["created"] == 2 and Item.objects.filter(project=project, text="again").count() == 2


def test_bulk_create_refuses_more_than_ten_thousand_items_and_an_empty_list(as_lead, project):
    assert bulk(as_lead, project, [{"text": f"t{i}"} for i in range(10_001)]).status_code == 422
    assert bulk(as_lead, project, []).status_code == 422
    assert not Item.objects.filter(project=project).exists()


# --- Item pages -------------------------------------------------------------------------------------------------------

def test_item_pages_walk_every_item_once_newest_first_and_back(as_lead, project):
    ids = [make_item(project, f"item {i}", status=Status.NEEDS_REVIEW if i % 2 else Status.PROPOSED).id
           for i in range(7)]
    seen, cursor, pages = [], "", []
    while True:
        page = as_lead.get(f"projects/{project.id}/items", data={"limit": 3, "cursor": cursor}).json()
        pages.append(page)
        seen += [item["id"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert seen == sorted(ids, reverse=True)
    back = as_lead.get(f"projects/{project.id}/items", data={"limit": 3, "cursor": pages[-1]["prev_cursor"]}).json()
    assert back["items"] == pages[-2]["items"]
    filtered = as_lead.get(f"projects/{project.id}/items", data={"status": "needs_review", "limit": 50}).json()
    assert [i["id"] for i in filtered["items"]] == [i for i in sorted(ids, reverse=True) if ids.index(i) % 2]


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjoxfQ", "eyJhZnRlciI6ICJ4In0", "eyJhZnRlciI6LTF9"])
def test_a_cursor_the_api_did_not_hand_out_is_a_clear_400(as_lead, project, cursor):
    response = as_lead.get(f"projects/{project.id}/items", data={"cursor": cursor})
    assert response.status_code == 400 and "cursor" in response.json()["detail"]


def test_an_item_comes_with_its_review_history(as_lead, as_annotator, project):
    item = make_item(project, "to be reviewed")
    claimed = as_annotator.post(f"projects/{project.id}/queue/next").json()["item"]
    as_annotator.post(f"projects/{project.id}/queue/items/{item.id}/review",
                      json={"action": "accept", "version": claimed["version"]})
    detail = as_lead.get(f"projects/{project.id}/items/{item.id}").json()
    assert detail["status"] == "accepted"
    assert [(h["action"], h["user"]) for h in detail["history"]] == [("accept", "annotator")]


# --- Review queue -----------------------------------------------------------------------------------------------------

def test_a_review_with_a_stale_version_is_refused_with_409_and_changes_nothing(as_lead, as_annotator, project):
    item = make_item(project, "contested")
    shown = as_annotator.post(f"projects/{project.id}/queue/next").json()["item"]
    assert shown["id"] == item.id
    Item.objects.filter(pk=item.pk).update(version=shown["version"] + 1)  # someone changed it meanwhile
    response = as_annotator.post(f"projects/{project.id}/queue/items/{item.id}/review",
                                 json={"action": "accept", "version": shown["version"]})
    assert response.status_code == 409
    assert "changed by someone else" in response.json()["detail"]
    item.refresh_from_db()
    assert item.status == Status.NEEDS_REVIEW and not item.reviews.exists()


def test_two_annotators_never_hold_the_same_item_and_undo_gives_it_back(as_annotator, project, lead):
    item = make_item(project, "only one")
    first = as_annotator.post(f"projects/{project.id}/queue/next").json()
    assert first["item"]["id"] == item.id and first["lease_expires_at"]
    other = ApiClient(token_for(lead)).post(f"projects/{project.id}/queue/next").json()
    assert other["item"] is None
    as_annotator.post(f"projects/{project.id}/queue/items/{item.id}/review",
                      json={"action": "reject", "version": first["item"]["version"], "reason": "low_quality"})
    undo = as_annotator.post(f"projects/{project.id}/queue/undo")
    assert undo.status_code == 200 and undo.json()["action"] == "undo"
    assert as_annotator.post(f"projects/{project.id}/queue/next").json()["item"]["id"] == item.id


# --- Export -----------------------------------------------------------------------------------------------------------

def test_export_streams_the_pages_formats_with_its_filters(as_lead, project):
    make_item(project, "=1+1 kept", status=Status.ACCEPTED, final_labels=["positive"])
    make_item(project, "not verified", status=Status.NEEDS_REVIEW)
    response = as_lead.get(f"projects/{project.id}/export")
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0] == "id,text,labels,status,source"
    assert "'=1+1 kept" in body and "not verified" not in body
    response = as_lead.get(f"projects/{project.id}/export", data={"format": "jsonl", "include": "all"})
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert sorted(r["text"] for r in rows) == ["=1+1 kept", "not verified"]
    assert as_lead.get(f"projects/{project.id}/export", data={"label": "nonexistent"}).status_code == 400


def test_export_past_the_rate_limit_is_429_with_retry_after(as_lead, project, settings):
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "export": (2, 3600)}
    url = f"projects/{project.id}/export"
    assert [as_lead.get(url).status_code for _ in range(2)] == [200, 200]
    refused = as_lead.get(url)
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 3600
    # Per token: another token of the same user has its own count.
    assert ApiClient(token_for(project.memberships.get(role="lead").user)).get(url).status_code == 200


# --- Tokens and sessions ----------------------------------------------------------------------------------------------

def test_a_token_is_shown_once_stored_hashed_and_stops_working_when_revoked(lead, project):
    browser = Client()
    browser.force_login(lead)
    page = browser.post(reverse("api_tokens"), {"name": "nightly"})
    secret = page.context["created"].secret
    assert secret in page.content.decode()
    token = ApiToken.objects.get(name="nightly")
    assert secret not in (token.secret_hash, token.prefix) and token.secret_hash != ""
    assert secret not in browser.get(reverse("api_tokens")).content.decode()
    client = ApiClient(secret)
    assert client.get("projects").status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None
    browser.post(reverse("api_token_revoke"), {"token_id": token.pk})
    assert client.get("projects").status_code == 401


def test_someone_elses_token_cannot_be_revoked(lead, annotator, project):
    token = tokens.token_create(user=annotator, name="mine").token
    browser = Client()
    browser.force_login(lead)
    browser.post(reverse("api_token_revoke"), {"token_id": token.pk})
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_browser_session_works_and_its_writes_need_the_csrf_token(lead, project):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(lead)
    assert browser.get(f"/api/v1/projects/{project.id}").status_code == 200
    url = f"/api/v1/projects/{project.id}/labels"
    refused = browser.post(url, {"name": "neutral"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    browser.get(reverse("home"))
    accepted = browser.post(url, {"name": "neutral"}, content_type="application/json",
                            headers={"X-CSRFToken": browser.cookies["csrftoken"].value})
    assert accepted.status_code == 201


def test_a_revoked_token_gets_401_even_beside_a_signed_in_session(lead, project, visitor_tokens):
    browser = Client()
    browser.force_login(lead)
    response = browser.get("/api/v1/projects", headers={"Authorization": f"Bearer {visitor_tokens['revoked']}"})
    assert response.status_code == 401
