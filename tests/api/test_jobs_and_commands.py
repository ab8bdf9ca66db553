"""Jobs through the API (every option of the start form, checked by it) and the command-line parity: createuser,
createtoken, start_job and score_round, so that a shell script can do what a lead does."""
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.models import Item, ScoringRound, Status
from generation.models import GenerationJob, JobStatus
from tests.api.conftest import ApiClient
from tests.support.factories import make_pool


def test_a_job_started_through_the_api_stores_the_options_it_was_given(as_lead, seeded):
    response = as_lead.post(f"projects/{seeded.id}/jobs", json={
        "mode": "label_conditioned", "provider": "offline",
        "options": {"count": 7, "samples_per_request": 2, "exemplars": 2, "labels": ["negative"],
                    "filters": {"min_chars": 3, "pii": False}, "parse_retries": 1}})
    assert response.status_code == 201, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert (job.requested, job.status, job.provider) == (7, JobStatus.QUEUED, "offline")
    assert job.config["labels"] == ["negative"] and job.config["samples_per_request"] == 2
    assert job.config["filters"]["min_chars"] == 3 and job.config["filters"]["pii"] is False
    assert job.config["parse_retries"] == 1
    cancelled = as_lead.post(f"projects/{seeded.id}/jobs/{job.id}/cancel").json()
    assert cancelled["status"] == "cancelled"


def test_options_the_start_form_refuses_are_refused_naming_their_field(as_lead, seeded):
    response = as_lead.post(f"projects/{seeded.id}/jobs", json={
        "mode": "label_conditioned", "provider": "offline", "options": {"steps": 2, "labels": ["nope"]}})
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert {"steps", "labels"} <= fields
    out_of_bounds = as_lead.post(f"projects/{seeded.id}/jobs", json={
        "mode": "label_conditioned", "provider": "offline", "options": {"count": 10**9}})
    assert out_of_bounds.status_code == 422
    assert not GenerationJob.objects.exists()


def test_a_shell_script_can_do_what_a_lead_does(project, monkeypatch):
    monkeypatch.setenv("SYNTHSTUDIO_PASSWORD", "a-long-enough-password-42")
    call_command("createuser", "scripted", "--email", "s@example.com", stdout=io.StringIO())
    user = get_user_model().objects.get(username="scripted")
    assert user.check_password("a-long-enough-password-42")
    out = io.StringIO()
    call_command("createtoken", "scripted", "--name", "ci", "--expires-days", "1", stdout=out)
    token = out.getvalue().strip()
    client = ApiClient(token)
    created = client.post("projects", json={"name": "From a script"})
    assert created.status_code == 201
    project_id = created.json()["id"]
    client.post(f"projects/{project_id}/labels", json={"name": "positive", "label_words": ["great", "wonderful"]})
    client.post(f"projects/{project_id}/labels", json={"name": "negative", "label_words": ["dull", "boring"]})
    pool = [{"text": f"a {word} film, take {i}"} for i in range(6) for word in ("great", "boring")]
    assert client.post(f"projects/{project_id}/items/bulk", json={"items": pool}).json()["created"] == 12

    out = io.StringIO()
    call_command("start_job", "--project", str(project_id), "--mode", "label_pool", "--provider", "offline",
                 "--count", "12", "--inline", stdout=out)
    assert "succeeded" in out.getvalue()
    assert Item.objects.filter(project_id=project_id).exclude(proposed_labels=[]).count() == 12

    out = io.StringIO()
    call_command("score_round", "--project", str(project_id), "--inline", stdout=out)
    assert out.getvalue().startswith("round 1 done: 12 items scored")
    latest = client.get(f"projects/{project_id}/routing/rounds/latest").json()
    assert latest["state"] == ScoringRound.State.DONE and latest["items_scored"] == 12
    routing = client.get(f"projects/{project_id}/routing").json()
    assert routing["headline"].startswith("Calibrating")
    assert Item.objects.filter(project_id=project_id, status=Status.NEEDS_REVIEW).exists()


def test_commands_refuse_with_a_message_that_says_why(project):
    with pytest.raises(CommandError, match="No active user"):
        call_command("createtoken", "nobody")
    with pytest.raises(CommandError, match="exists already"):
        call_command("createuser", "lead")
    with pytest.raises(CommandError, match="steps"):
        call_command("start_job", "--project", str(project.id), "--mode", "label_conditioned", "--provider",
                     "offline", "--options", '{"steps": 2}')
    with pytest.raises(CommandError, match="--options"):
        call_command("start_job", "--project", str(project.id), "--mode", "label_pool", "--options", "[1]")
    make_pool(project, n_per_class=3)
    with pytest.raises(CommandError, match="not a lead"):
        call_command("start_job", "--project", str(project.id), "--mode", "label_pool", "--as", "annotator")
