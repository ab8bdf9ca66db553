"""The project's overview (the cockpit) runs a fixed number of queries however many items, reviews, jobs, imports and
scoring rounds the project has, full page and htmx fragment alike, for a lead and for an annotator; and none of them
reads the item table (its counts come from the counters, annotation/items/counts.py)."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.items import services
from annotation.models import ImportJob, Item, ReviewAction, ScoringRound, Status
from generation.models import GenerationJob, JobMode, JobStatus
from tests.support.factories import add_member, make_item, make_user

# session, user, access, the item counters (per status and for the pipeline), labels, the team's pace, jobs, imports,
# rounds
OVERVIEW_QUERIES = 9


def count(client, url, **kwargs) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, **kwargs).status_code == 200
    items = connection.ops.quote_name(Item._meta.db_table)
    assert [q["sql"] for q in ctx.captured_queries if items in q["sql"]] == []
    return len(ctx.captured_queries)


def grow(project, lead, n):
    for i in range(n):
        reviewer = make_user()
        add_member(project, reviewer)
        item = make_item(project, f"grown {project.pk} {i} {n}")
        services.item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=reviewer,
                                 final_labels=["positive"])
        make_item(project, f"waiting {project.pk} {i} {n}")
        GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                     provider="offline", config={}, requested=3, status=JobStatus.SUCCEEDED)
        ImportJob.objects.create(project=project, created_by=lead, file_name=f"{i}.csv", format="csv",
                                 state=ImportJob.State.DONE)
        ScoringRound.objects.create(project=project, model_version=100 * n + i, state=ScoringRound.State.DONE)


@pytest.mark.parametrize("who", ["lead", "annotator"])
@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}], ids=["page", "htmx"])
def test_the_overview_costs_the_same_queries_at_any_size(request, client, project, lead, who, headers):
    client.force_login(request.getfixturevalue(who))
    url = reverse("project_detail", args=[project.id])
    small = count(client, url, headers=headers)
    grow(project, lead, 8)
    assert count(client, url, headers=headers) == small <= OVERVIEW_QUERIES
