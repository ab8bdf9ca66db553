"""Generation pages: permissions, HTMX and plain requests, live progress that stops, escaping of model output, and a
real Celery worker running a job end to end."""
import tracemalloc

import pytest
from django.urls import reverse

from annotation.models import AttributeDimension, Item, Source, Status
from generation import services
from generation.models import GenerationJob, JobEvent, JobMode, JobStatus
from tests.support.factories import make_item
from tests.support.runtime import wait_for, worker_env
from tests.support.visits import VISITORS, visitor_client

FORM = {"mode": "label_conditioned", "provider": "offline", "model_name": "", "count": "6",
        "samples_per_request": "2", "requests_per_batch": "2", "max_concurrency": "2", "exemplars": "2",
        "temperature": "0.9", "steps": "1", "balance_project": "on", "response_format": "json_schema",
        "consistency": "samples", "consistency_k": "5", "min_chars": "10", "max_chars": "2000",
        "near_duplicate": "0.8", "leakage_words": "0", "pii": "on",
        "template_system": services.prompts.DEFAULT_TEMPLATES["system"],
        "template_generate": services.prompts.DEFAULT_TEMPLATES["generate"],
        "template_label": services.prompts.DEFAULT_TEMPLATES["label"],
        "template_check": services.prompts.DEFAULT_TEMPLATES["check"]}


@pytest.fixture
def job(project, lead):
    for text in ("A wonderful film, I loved it a lot.", "Brilliant acting and a great story overall."):
        make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=["positive"])
    for text in ("A boring mess, the worst of the year.", "Terrible pacing and an awful script."):
        make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=["negative"])
    return services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="offline",
                               options={"count": 4, "samples_per_request": 2, "requests_per_batch": 1,
                                        "filters": {"leakage_words": 0}}, enqueue=False)


MATRIX = [
    ("generation_jobs", "get", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("generation_start", "get", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("generation_start", "post", {"lead": 302, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("generation_preview", "post", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("generation_job", "get", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("generation_cancel", "post", {"lead": 302, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("generation_inspect", "get", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
]


@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("name,method,expected", MATRIX, ids=[f"{m[0]}-{m[1]}" for m in MATRIX])
def test_permission_matrix(request, client, project, job, who, name, method, expected):
    c = visitor_client(request, client, who)
    args = [project.id] if name in ("generation_jobs", "generation_start", "generation_preview") else [project.id,
                                                                                                       job.id]
    response = getattr(c, method)(reverse(name, args=args), FORM if method == "post" else None)
    assert response.status_code == expected[who]
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login"))


def test_another_projects_job_is_not_found(client, project, job, outsider):
    other = outsider.memberships.get().project
    client.force_login(job.created_by)
    assert client.get(reverse("generation_job", args=[other.id, job.id])).status_code == 404


def test_starting_a_job_queues_it_and_redirects_to_its_page(client, project, lead, job, django_capture_on_commit_callbacks):
    client.force_login(lead)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("generation_start", args=[project.id]), FORM)
    new = GenerationJob.objects.exclude(pk=job.pk).get()
    assert response["Location"] == reverse("generation_job", args=[project.id, new.id])
    assert new.requested == 6 and new.provider == "offline" and new.status == JobStatus.QUEUED
    assert new.config["filters"]["near_duplicate"] == 0.8 and new.config["templates"] == {}
    assert len(callbacks) == 1  # the task is sent only once the job row is committed


def test_a_bad_template_is_refused_naming_the_placeholder(client, project, lead):
    client.force_login(lead)
    response = client.post(reverse("generation_start", args=[project.id]),
                           {**FORM, "template_generate": "Write $count about $weather"})
    assert response.status_code == 200
    assert "$weather" in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_offline_cannot_self_check(client, project, lead):
    client.force_login(lead)
    response = client.post(reverse("generation_start", args=[project.id]), {**FORM, "steps": "2"})
    assert "needs an LLM" in response.content.decode()


def test_the_form_puts_each_problem_next_to_its_field(client, project, lead):
    client.force_login(lead)
    response = client.post(reverse("generation_start", args=[project.id]),
                           {**FORM, "min_chars": "50", "max_chars": "20", "count": "20001"})
    form = response.context["form"]
    assert form.errors["max_chars"] == ["Must be larger than the shortest text."]
    assert form.errors["count"] == ["Ensure this value is less than or equal to 20000."]  # the bound of JobOptions
    assert not GenerationJob.objects.exists()


def test_a_huge_attribute_cross_product_is_refused_without_building_it(client, project, lead):
    for name in ("topic", "tone"):
        AttributeDimension.objects.create(project=project, name=name, values=[f"{name} {i}" for i in range(1000)])
    client.force_login(lead)
    form = {**FORM, "mode": "attribute_conditioned"}
    tracemalloc.start()
    try:
        preview = client.post(reverse("generation_preview", args=[project.id]), form,
                              headers={"HX-Request": "true"}).content.decode()
        start = client.post(reverse("generation_start", args=[project.id]), form).content.decode()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for body in (preview, start):
        assert "Attribute dimension &#x27;topic&#x27; has 1,000 values; at most 200" in body
    assert not GenerationJob.objects.exists()
    # The 2,000,000 cells of 2 labels x 1,000 x 1,000 would take hundreds of MB; counting them takes nothing.
    assert peak < 16 * 2**20


def test_a_cross_product_over_the_cell_limit_is_refused_with_its_size(client, project, lead):
    for name in ("topic", "tone", "length"):
        AttributeDimension.objects.create(project=project, name=name, values=[f"{name} {i}" for i in range(20)])
    client.force_login(lead)
    body = client.post(reverse("generation_start", args=[project.id]),
                       {**FORM, "mode": "attribute_conditioned"}).content.decode()
    assert "2 labels x 20 x 20 x 20 values = 16,000 cells; the limit is 2,000" in body
    assert not GenerationJob.objects.exists()


def test_preview_with_and_without_htmx(client, project, lead, job):
    client.force_login(lead)
    url = reverse("generation_preview", args=[project.id])
    fragment = client.post(url, FORM, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<section id="preview"')
    assert "Write 2 new samples whose label is" in fragment and "<html" not in fragment
    page = client.post(url, FORM).content.decode()
    assert "<html" in page and "Write 2 new samples whose label is" in page


def test_the_start_page_names_offline_honestly(client, project, lead):
    client.force_login(lead)
    assert "offline augmentation (no LLM)" in client.get(reverse("generation_start", args=[project.id])).content.decode()


def test_progress_polls_while_active_and_stops_when_done(client, project, lead, job):
    client.force_login(lead)
    url = reverse("generation_job", args=[project.id, job.id])
    page = client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in page and "<html" in page
    fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="job-live"') and 'hx-trigger="every 1s"' in fragment
    assert "<html" not in fragment and "No items yet" in fragment
    services.job_run(job_id=job.id, token="t")
    done = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done and "Succeeded" in done
    # The last poll brings the job's items and log with it: no "No items yet" until a reload.
    assert "No items yet" not in done and "Latest items from this job" in done
    finished = GenerationJob.objects.get(pk=job.pk)
    assert 0 < done.count("<tr><td>#") == finished.produced + finished.filtered
    assert "samples done" in done and "per minute" in done
    assert "offline augmentation (no LLM)" in client.get(url).content.decode()


def test_cancel_with_and_without_htmx(client, project, lead, job):
    client.force_login(lead)
    url = reverse("generation_cancel", args=[project.id, job.id])
    fragment = client.post(url, headers={"HX-Request": "true"}).content.decode()
    assert "Cancelled" in fragment and "hx-trigger" not in fragment
    assert client.post(url).status_code == 302
    assert GenerationJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_job_pages_show_hostile_output_as_text(client, project, lead, job):
    hostile = '<script>alert(1)</script> <img src=x onerror=alert(1)>'
    make_item(project, f"The film {hostile} was fine.", status=Status.FILTERED, source=Source.LLM,
              generation_job_id=job.id, filter_reason=f"near duplicate of {hostile}")
    JobEvent.objects.create(job=job, kind="malformed", message="bad", data={"raw": '{"samples": "' + hostile})
    client.force_login(lead)
    for name in ("generation_job", "generation_inspect"):
        body = client.get(reverse(name, args=[project.id, job.id])).content.decode()
        assert "<script>alert(1)</script>" not in body and "<img src=x" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_a_hostile_generated_item_is_escaped_on_the_item_page(client, project, lead, llm_server, settings,
                                                              monkeypatch, job):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings.OPENAI_BASE_URL = llm_server.base_url
    llm_server.queue_faults("hostile")
    hostile_job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                                      options={"count": 2, "samples_per_request": 2, "requests_per_batch": 1},
                                      enqueue=False)
    services.job_run(job_id=hostile_job.id, token="t")
    item = Item.objects.filter(generation_job_id=hostile_job.id).first()
    assert "<script>" in item.text
    client.force_login(lead)
    for url in (reverse("item_detail", args=[project.id, item.id]), reverse("generation_job",
                                                                            args=[project.id, hostile_job.id])):
        body = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_a_real_worker_runs_a_job_end_to_end(celery_worker_process, project, lead, llm_server, monkeypatch):
    from tests.support.runtime import TEST_QUEUE, start_worker, stop_worker

    # The fixture's worker does not know the loopback server; restart it with the server in its environment.
    stop_worker(celery_worker_process)
    worker = start_worker(queue=TEST_QUEUE, env=worker_env(OPENAI_BASE_URL=llm_server.base_url,
                                                           OPENAI_API_KEY="sk-test", OPENAI_TIMEOUT="5"))
    try:
        llm_server.queue_faults("429", "truncated_json")
        job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                                  options={"count": 12, "samples_per_request": 3, "requests_per_batch": 2,
                                           "exemplars": 0})
        wait_for(lambda: not GenerationJob.objects.get(pk=job.pk).is_active, what="the job to end")
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, list(JobEvent.objects.filter(job=job).values_list("message"))
        assert job.produced + job.filtered + job.failed == 12
        assert job.retries >= 1 and job.malformed == 1
        assert Item.objects.filter(generation_job_id=job.id).count() == job.produced + job.filtered
        assert job.claimed_by and job.claimed_by != "test-worker"
    finally:
        stop_worker(worker)
