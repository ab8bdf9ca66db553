"""The project's overview as the lead's cockpit: the pipeline with the next action, the target, the queue's progress
with an ETA from the team's pace (none without a pace), the latest work, and polling only while work runs."""
from datetime import timedelta

from django.db import connection
from django.urls import reverse
from django.utils import timezone

from annotation.items import services
from annotation.models import ImportJob, Label, Project, Review, ReviewAction, ScoringRound, Source, Status
from generation.models import GenerationJob, JobMode, JobStatus
from tests.support.factories import make_item, make_project, make_user

HX = {"HX-Request": "true"}


def overview(client, project, **kwargs):
    response = client.get(reverse("project_detail", args=[project.id]), **kwargs)
    assert response.status_code == 200
    return response.content.decode()


def accept(item, user):
    return services.item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=user,
                                    final_labels=list(item.proposed_labels))


def test_a_new_projects_overview_says_what_to_do_first(client, lead):
    project = make_project(lead=lead, name="Fresh", labels=())
    client.force_login(lead)
    body = overview(client, project)
    assert "Start here" in body
    assert reverse("labels", args=[project.id]) in body
    # The first step of the pipeline is the current one: define labels.
    assert 'aria-current="step"' in body
    now = body.split('aria-current="step"')[1]
    assert now.index("Labels defined") < 200
    assert "No ETA" in body


def test_the_pipeline_moves_on_as_the_project_does(client, project, lead):
    client.force_login(lead)
    make_item(project, "a pool item without a proposal", status=Status.PROPOSED, proposed=(), source=Source.IMPORTED)
    body = overview(client, project)
    assert "Start here" not in body
    current = body.split('aria-current="step"')[1][:400]
    assert "Labelled by the LLM" in current and "Start a labelling job" in current
    assert "1 imported, 0 generated" in body


def test_statuses_are_in_human_words(client, project, lead):
    client.force_login(lead)
    make_item(project, status=Status.NEEDS_REVIEW)
    body = overview(client, project)
    assert "Waiting for review" in body
    assert "needs_review" not in body


def test_the_queue_eta_follows_the_teams_pace(client, project, lead, annotator):
    client.force_login(lead)
    for i in range(4):
        make_item(project, f"waiting {i}")
    for i in range(2):
        accept(make_item(project, f"done {i}"), annotator)
    body = overview(client, project)
    # 2 decided, 4 waiting: a third of the way; 2 reviews in the last hour, so 4 more take about 2 hours.
    assert "<strong>2</strong> decided (accepted or rejected)" in body
    assert "<strong>4</strong> waiting for review (33% done)" in body
    assert 'value="33"' in body
    assert "Team pace: 2 reviews per hour over the last hour" in body
    assert "empty in about 2.0 hours" in body


def test_no_eta_without_reviews_in_the_last_day(client, project, lead, annotator):
    client.force_login(lead)
    make_item(project, "waiting")
    accept(make_item(project, "old decision"), annotator)
    with connection.cursor() as cursor:  # reviews are append-only through the ORM; age the row in SQL
        cursor.execute(f"UPDATE {Review._meta.db_table} SET created_at = %s", [timezone.now() - timedelta(days=2)])
    body = overview(client, project)
    assert "No ETA" in body
    assert "Team pace" not in body


def test_an_undone_review_does_not_count_towards_the_pace(client, project, lead, annotator):
    client.force_login(lead)
    make_item(project, "waiting")
    item = make_item(project, "decided then undone")
    accept(item, annotator)
    item.refresh_from_db()
    services.item_transition(item=item, to=Status.NEEDS_REVIEW, action=ReviewAction.UNDO, user=annotator)
    assert "No ETA" in overview(client, project)


def test_the_target_state_comes_from_the_routing_state(client, project, lead):
    client.force_login(lead)
    Project.objects.filter(pk=project.pk).update(routing_state={
        "phase": "calibrating", "target": 0.98, "calibration": {"size": 73, "done": 12, "right": 11, "n": 12}})
    body = overview(client, project)
    assert "Calibrating: 12 of 73 items reviewed" in body
    assert "12 of 73 calibration items reviewed" in body


def test_the_annotator_sees_the_queue_but_not_the_leads_pipeline(client, project, annotator):
    client.force_login(annotator)
    make_item(project)
    body = overview(client, project)
    assert "Open the review queue" in body
    assert "Pipeline" not in body
    assert reverse("import", args=[project.id]) not in body


def test_the_overview_polls_while_a_job_runs_and_stops_when_it_ends(client, project, lead):
    client.force_login(lead)
    job = GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                       provider="offline", config={}, requested=10, status=JobStatus.RUNNING)
    body = overview(client, project, headers=HX)
    assert body.lstrip().startswith('<div id="overview"')
    assert 'hx-trigger="every 2s"' in body
    assert f"Job #{job.id}" in body
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, produced=10)
    body = overview(client, project, headers=HX)
    assert "hx-trigger" not in body
    assert "10 stored" in body


def test_the_overview_polls_while_an_import_or_a_round_is_under_way(client, project, lead):
    client.force_login(lead)
    ImportJob.objects.create(project=project, created_by=lead, file_name="pool.csv", format="csv",
                             state=ImportJob.State.VALIDATING)
    assert 'hx-trigger="every 2s"' in overview(client, project)
    ImportJob.objects.update(state=ImportJob.State.DONE)
    assert "hx-trigger" not in overview(client, project)
    ScoringRound.objects.create(project=project, model_version=1)
    assert 'hx-trigger="every 2s"' in overview(client, project)


def test_hostile_text_in_names_stays_text(client, lead):
    project = make_project(lead=lead, name="<script>alert(1)</script>")
    Label.objects.create(project=project, name="x<b>y", order=9)
    ImportJob.objects.create(project=project, created_by=make_user(), file_name="<img src=x onerror=1>.csv",
                             format="csv")
    client.force_login(lead)
    body = overview(client, project)
    assert "<script>alert(1)" not in body and "<img src=x" not in body
