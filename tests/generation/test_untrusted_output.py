"""Issue 16 #3: model output and usage are untrusted. Each hostile answer of the loopback server (real HTTP, the real
client) must end as failed samples with the raw answer kept and bounded, never as a failed job; on SQLite and on
PostgreSQL (where a NUL is a DataError and a token count beyond bigint an overflow)."""
import pytest
from django.urls import reverse

from annotation.models import Item, Source, Status
from generation import services
from generation.models import GenerationJob, JobEvent, JobMode, JobStatus
from generation.parsing import RAW_KEEP_CHARS
from tests.support.factories import make_item

SEEDS = {"positive": ["A wonderful film with a brilliant cast and a moving story.",
                      "I loved every minute; the music was superb and the ending delightful."],
         "negative": ["A boring, dull mess with the worst dialogue of the year.",
                      "I hated the plot and the acting was terrible throughout."]}
POOL = ["A wonderful, moving film; I loved it.", "Terrible acting and a boring plot.",
        "The best concert I have seen, brilliant.", "An awful, dull evening, a waste."]
# The first request of the job gets the fault; parse_retries=0 so that its samples fail instead of being asked again.
OPTIONS = {"max_concurrency": 1, "parse_retries": 0, "price_prompt_per_1k": "0.5", "price_completion_per_1k": "1.5"}


def run(project, lead, mode, **options) -> GenerationJob:
    job = services.job_create(project=project, user=lead, mode=mode, provider="openai",
                              options={**OPTIONS, **options}, enqueue=False)
    services.job_run(job_id=job.id, token="test-worker")
    job.refresh_from_db()
    return job


def generate(project, lead) -> GenerationJob:
    for label, texts in SEEDS.items():
        for text in texts:
            make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=[label],
                      source=Source.IMPORTED)
    return run(project, lead, JobMode.LABEL_CONDITIONED, count=10, samples_per_request=5, requests_per_batch=2,
               exemplars=1)


def label_pool(project, lead) -> tuple[GenerationJob, list[Item]]:
    items = [make_item(project, text, status=Status.NEEDS_REVIEW, proposed=()) for text in POOL]
    return run(project, lead, JobMode.LABEL_POOL, count=100, requests_per_batch=4), items


def assert_counted(job: GenerationJob) -> None:
    assert job.status == JobStatus.SUCCEEDED, list(JobEvent.objects.filter(job=job).values_list("message"))
    assert job.produced + job.filtered + job.failed == job.requested
    assert 0 <= job.prompt_tokens < 10**6 and 0 <= job.completion_tokens < 10**6
    assert job.cost_usd is not None and job.cost_usd < 1


def assert_kept_raw(job: GenerationJob, reason: str) -> None:
    event = JobEvent.objects.get(job=job, kind="malformed")
    assert event.data["reason"] == reason
    raw = event.data["raw"]
    assert "\x00" not in raw and len(raw) <= RAW_KEEP_CHARS + 40
    raw.encode("utf-8")  # storable: no lone surrogate


# fault -> the malformed reason recorded with the raw answer
GENERATION_FAULTS = {
    "nul_in_text": "bad_text",
    "surrogate_text": "bad_text",
    "nul_raw": "invalid_json",
    "deep_nesting": "too_deep",
    "non_string_content": "not_text",
    "usage_negative": "bad_usage",
    "usage_overflow": "bad_usage",
    "usage_huge": "bad_usage",
}


@pytest.mark.parametrize("fault", GENERATION_FAULTS)
def test_a_hostile_answer_fails_its_samples_not_the_generation_job(project, lead, llm, fault):
    llm.queue_faults(fault)
    job = generate(project, lead)
    assert_counted(job)
    assert (job.failed, job.failed_by_reason, job.malformed) == (5, {"malformed": 5}, 1)
    assert job.produced + job.filtered == 5
    assert_kept_raw(job, GENERATION_FAULTS[fault])
    texts = list(Item.objects.filter(generation_job_id=job.id).values_list("text", flat=True))
    assert len(texts) == 5 and not any("\x00" in t or "\ud800" in t for t in texts)


LABELLING_FAULTS = {
    "nul_raw": "invalid_json",
    "deep_nesting": "too_deep",
    "non_string_content": "not_text",
    "usage_negative": "bad_usage",
    "usage_overflow": "bad_usage",
    "usage_huge": "bad_usage",
}


@pytest.mark.parametrize("fault", LABELLING_FAULTS)
def test_a_hostile_answer_fails_its_item_not_the_labelling_job(project, lead, llm, fault):
    llm.queue_faults(fault)
    job, items = label_pool(project, lead)
    assert_counted(job)
    assert (job.requested, job.produced, job.failed_by_reason) == (4, 3, {"malformed": 1})
    assert_kept_raw(job, LABELLING_FAULTS[fault])
    items[0].refresh_from_db()
    assert items[0].proposed_labels == [] and items[0].llm_confidence is None


def test_absurd_logprobs_are_ignored_and_the_item_labelled_by_votes(project, lead, llm):
    llm.queue_faults("bad_logprobs")
    job, items = label_pool(project, lead)
    assert_counted(job)
    assert job.produced == 4
    items[0].refresh_from_db()
    assert items[0].provenance["labelling"]["method"] == "self-consistency"
    assert 0 < items[0].llm_confidence <= 1


@pytest.mark.parametrize("job_kind", ["generation", "labelling"])
def test_a_response_body_nested_too_deeply_is_retried_like_any_unreadable_body(project, lead, llm, job_kind):
    llm.queue_faults("deep_body")
    job = generate(project, lead) if job_kind == "generation" else label_pool(project, lead)[0]
    assert_counted(job)
    assert job.retries == 1 and job.failed == 0


def test_the_cost_stops_at_what_the_column_can_hold(client, project, lead, llm):
    for label, texts in SEEDS.items():
        for text in texts:
            make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=[label])
    job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                              options={**OPTIONS, "count": 5, "samples_per_request": 5, "exemplars": 1,
                                       "price_prompt_per_1k": "9999"}, enqueue=False)
    GenerationJob.objects.filter(pk=job.pk).update(cost_usd=GenerationJob.COST_CAP - 1)
    services.job_run(job_id=job.id, token="test-worker")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.produced + job.filtered == 5
    assert job.cost_usd == GenerationJob.COST_CAP and job.cost_capped
    client.force_login(lead)
    assert "999999.999999 or more" in client.get(reverse("generation_job", args=[project.id, job.id])).content.decode()
