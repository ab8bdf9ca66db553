"""The lead's pages run a fixed number of queries however many items, reviews, labels, jobs or events they show.

Pages already covered elsewhere: home, members and project page (test_query_counts.py), queue and its actions
(test_queue_views.py), browse list (test_browse.py), dashboard (test_dashboard.py), export stream (test_export.py).
"""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import (
    AttributeDimension,
    ImportJob,
    Item,
    Label,
    Review,
    ReviewAction,
    ScoringRound,
    Status,
)
from annotation.projects import selectors
from generation.models import GenerationJob, JobEvent, JobMode
from tests.support.factories import add_member, make_item, make_user

HX = {"HX-Request": "true"}


def queries(client, url, **kwargs) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, **kwargs).status_code == 200
    return len(ctx.captured_queries)


def same_count_after_growing(client, url, grow, *, htmx_too: bool = True) -> None:
    """Count the page's queries (full and HTMX), grow what it shows, count again: the counts must not change."""
    variants = [{}, {"headers": HX}] if htmx_too else [{}]
    before = [queries(client, url, **kw) for kw in variants]
    grow()
    assert [queries(client, url, **kw) for kw in variants] == before


@pytest.fixture
def as_lead(client, lead):
    client.force_login(lead)
    return client


def reviewed_item(project, n_reviews: int) -> Item:
    item = make_item(project)
    for _ in range(n_reviews):
        grow_history(item)
    return item


def grow_history(item):
    reviewer = make_user()
    add_member(item.project, reviewer)
    Review.objects.create(item=item, project=item.project, user=reviewer, action=ReviewAction.SKIP)


def test_item_page(as_lead, project):
    item = reviewed_item(project, 1)
    item.claimed_by = make_user()
    item.save()
    url = reverse("item_detail", args=[project.id, item.id])
    same_count_after_growing(as_lead, url, lambda: [grow_history(item) for _ in range(12)], htmx_too=False)


def test_settings_page(as_lead, project):
    url = reverse("project_settings", args=[project.id])
    same_count_after_growing(as_lead, url, lambda: [make_item(project) for _ in range(10)])


def test_labels_page(as_lead, project):
    url = reverse("labels", args=[project.id])

    def grow():
        for i in range(10):
            Label.objects.create(project=project, name=f"extra {i}", order=10 + i)
            make_item(project, proposed=(f"extra {i}",))

    same_count_after_growing(as_lead, url, grow)


def test_attributes_page(as_lead, project):
    url = reverse("attributes", args=[project.id])
    AttributeDimension.objects.create(project=project, name="topic", values=["a", "b"])
    same_count_after_growing(as_lead, url, lambda: [
        AttributeDimension.objects.create(project=project, name=f"dim {i}", values=["x", "y", "z"], order=i)
        for i in range(8)
    ])


def make_import_job(project, user) -> ImportJob:
    return ImportJob.objects.create(project=project, created_by=user, file_name="rows.csv", format="csv",
                                    state=ImportJob.State.DONE, rows_total=3, errors=[{"row": 2, "field": "text",
                                                                                       "message": "missing"}])


def test_import_page(as_lead, project, lead):
    make_import_job(project, lead)
    url = reverse("import", args=[project.id])
    same_count_after_growing(as_lead, url, lambda: [make_import_job(project, make_user()) for _ in range(8)])


def test_import_job_page(as_lead, project, lead):
    job = make_import_job(project, lead)
    url = reverse("import_detail", args=[project.id, job.id])
    same_count_after_growing(as_lead, url, lambda: [make_item(project) for _ in range(10)])


def test_export_page(as_lead, project):
    make_item(project, status=Status.ACCEPTED, final_labels=["positive"])
    url = reverse("export", args=[project.id])
    same_count_after_growing(as_lead, url, lambda: [make_item(project, status=Status.ACCEPTED) for _ in range(10)])


def make_job(project, user) -> GenerationJob:
    job = GenerationJob.objects.create(project=project, created_by=user, mode=JobMode.LABEL_CONDITIONED,
                                       requested=10, filtered_by_reason={"duplicate": 1})
    grow_job(job)
    return job


def grow_job(job, n: int = 1):
    for i in range(n):
        make_item(job.project, generation_job_id=job.id)
        make_item(job.project, generation_job_id=job.id, status=Status.FILTERED, filter_reason="duplicate")
        JobEvent.objects.create(job=job, kind="batch", message=f"batch {i}", data={"produced": 1})
        JobEvent.objects.create(job=job, kind="malformed", message="bad JSON", data={"raw": "{oops"})
        JobEvent.objects.create(job=job, kind="error", message="429", data={})


def test_generation_job_list(as_lead, project, lead):
    make_job(project, lead)
    url = reverse("generation_jobs", args=[project.id])
    same_count_after_growing(as_lead, url, lambda: [make_job(project, make_user()) for _ in range(8)],
                             htmx_too=False)


@pytest.mark.parametrize("page", ["generation_job", "generation_inspect"])
def test_generation_job_pages(as_lead, project, lead, page):
    job = make_job(project, lead)
    url = reverse(page, args=[project.id, job.id])
    same_count_after_growing(as_lead, url, lambda: grow_job(job, 8))


def test_home_counts_stop_at_the_cap(as_lead, project, monkeypatch):
    monkeypatch.setattr(selectors, "HOME_COUNT_CAP", 3)
    for _ in range(3):
        make_item(project)
    make_item(project, status=Status.ACCEPTED)
    body = as_lead.get(reverse("home")).content.decode()
    assert '<td class="num">3+</td>' in body  # four items
    assert '<td class="num">3</td>' in body  # three need review
    make_item(project)
    assert body.count("3+") == 1
    assert as_lead.get(reverse("home")).content.decode().count('<td class="num">3+</td>') == 2


def test_home_counts_leave_out_archived_items(as_lead, project):
    make_item(project)
    make_item(project, archived_at="2020-01-01T00:00:00Z")
    body = as_lead.get(reverse("home")).content.decode()
    assert body.count('<td class="num">1</td>') == 2


def test_routing_page(as_lead, project):
    url = reverse("routing", args=[project.id])

    def grow():
        for version in range(1, 8):
            ScoringRound.objects.create(project=project, model_version=version, state=ScoringRound.State.DONE,
                                        metrics={"last_review_id": 0})
        for _ in range(5):
            make_item(project, status=Status.ACCEPTED, is_audit=True, final_labels=["positive"])
            make_item(project, status=Status.AUTO_ACCEPTED)

    same_count_after_growing(as_lead, url, grow)
