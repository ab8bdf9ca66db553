"""The LLM API key is read from the environment only: never rendered, stored in the job log or items, or logged."""
import logging

from django.urls import reverse

from annotation.models import Item, Source, Status
from generation import services
from generation.models import GenerationJob, JobEvent, JobMode, JobStatus
from tests.support.factories import make_item

MARKER = "sk-MARKER-4f1c9e2b7a"


def test_the_api_key_appears_in_no_page_no_job_log_no_item_and_no_log_record(
        client, project, lead, llm_server, settings, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", MARKER)
    settings.OPENAI_BASE_URL = llm_server.base_url
    settings.OPENAI_TIMEOUT = 2
    caplog.set_level(logging.DEBUG)  # everything any library would log, the openai client's request dumps included
    for label, text in (("positive", "A wonderful film with a brilliant cast."),
                        ("negative", "A boring, dull mess with awful dialogue.")):
        make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=[label], source=Source.IMPORTED)
    llm_server.queue_faults("429", "500", "truncated_json", "malformed_body", "hostile")
    job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                              options={"count": 12, "samples_per_request": 3, "requests_per_batch": 2,
                                       "exemplars": 1}, enqueue=False)
    services.job_run(job_id=job.id, token="test")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.retries > 0  # errors happened and were logged
    assert llm_server.requests  # the key really was sent to the server

    logged = [r for r in caplog.records if MARKER in r.getMessage() or MARKER in str(r.__dict__)]
    assert any(r.name.startswith(("openai", "httpx", "httpcore")) for r in caplog.records)  # it did listen
    assert logged == []
    assert not JobEvent.objects.filter(job=job, message__contains=MARKER).exists()
    assert all(MARKER not in str(data) for data in JobEvent.objects.filter(job=job).values_list("data", flat=True))
    assert all(MARKER not in str(row) for row in GenerationJob.objects.filter(pk=job.pk).values())
    assert all(MARKER not in str(row) for row in Item.objects.filter(generation_job_id=job.id).values())
    client.force_login(lead)
    p = project.id
    for url in (reverse("generation_jobs", args=[p]), reverse("generation_start", args=[p]),
                reverse("generation_job", args=[p, job.id]), reverse("generation_inspect", args=[p, job.id]),
                reverse("project_settings", args=[p])):
        assert MARKER not in client.get(url).content.decode(), url
