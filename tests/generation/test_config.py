"""The typed job configuration and the provider registry: one validation for the form and the services, stored
configurations that still load, and capabilities (not provider names) deciding what a job may do and how it asks."""
import dataclasses

import pytest
from django.urls import reverse

from annotation.models import Item, Source, Status
from generation import providers, services
from generation.config import JobConfig, JobConfigError, options_validate
from generation.endpoints import Endpoint
from generation.models import GenerationJob, JobEvent, JobMode, JobStatus
from tests.support.factories import make_item

# What job_config stored before the typed configuration, byte for byte the shape of an existing job's row.
STORED_BEFORE = {
    "spec": {"task": "Sentiment of reviews", "multi_label": False,
             "labels": [{"name": "positive", "description": "liked it", "words": ["positive", "great"]},
                        {"name": "negative", "description": "", "words": ["negative"]}]},
    "labels": ["positive", "negative"], "attributes": {}, "samples_per_request": 2, "requests_per_batch": 2,
    "exemplars": 2, "temperature": 0.9, "steps": 1, "balance_project": True, "response_format": "json_schema",
    "parse_retries": 2, "consistency": "samples", "consistency_k": 5, "max_concurrency": 8,
    "filters": {"min_chars": 10, "max_chars": 2000, "near_duplicate": 0.8, "leakage_words": 0, "pii": True},
    "templates": {}, "price_prompt_per_1k": "", "price_completion_per_1k": "", "baseline": {"positive": 2},
}


@pytest.fixture
def seeded(project):
    for label, text in (("positive", "A wonderful film with a brilliant cast and a moving story."),
                        ("positive", "I loved every minute; the music was superb and the ending delightful."),
                        ("negative", "A boring, dull mess with the worst dialogue of the year."),
                        ("negative", "I hated the plot and the acting was terrible throughout.")):
        make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=[label], source=Source.IMPORTED)
    return project


def test_a_configuration_stored_before_the_typed_one_loads_and_runs(seeded, lead):
    config = JobConfig.load(STORED_BEFORE)
    assert config.spec.labels[0].words == ("positive", "great") and config.price_prompt_per_1k is None
    job = GenerationJob.objects.create(project=seeded, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                       provider="offline", config=STORED_BEFORE, requested=4, batches_total=1)
    services.job_run(job_id=job.id, token="t")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.produced + job.filtered + job.failed == 4
    assert JobConfig.load(JobConfig.load(STORED_BEFORE).dump()) == config  # and the new form round-trips


def test_a_job_whose_stored_configuration_cannot_be_read_fails_with_the_reason(project, lead):
    job = GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                       provider="offline", config={**STORED_BEFORE, "steps": 7}, requested=4,
                                       batches_total=1)
    services.job_run(job_id=job.id, token="t")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "steps" in JobEvent.objects.get(job=job, kind="failed").message


def test_bad_options_are_refused_naming_each_field(project, lead):
    with pytest.raises(JobConfigError) as err:
        services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                            options={"count": 0, "colour": "blue", "filters": {"min_chars": 50, "max_chars": 20}},
                            enqueue=False)
    fields = [path for path, _ in err.value.problems]
    assert fields == ["count", "colour"]  # the filter rule is checked once the fields themselves are valid
    with pytest.raises(JobConfigError, match="filters.max_chars: Must be larger than the shortest text"):
        services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                            options={"filters": {"min_chars": 50, "max_chars": 20}}, enqueue=False)
    with pytest.raises(JobConfigError, match="provider: Unknown provider 'gpt'"):
        services.job_create(project=project, user=lead, mode="sing", provider="gpt", options={}, enqueue=False)
    assert not GenerationJob.objects.exists()


ECHO_CAPABILITIES = providers.Capabilities(is_llm=True, needs_seeds=False, response_formats=("json_object", "none"),
                                           logprobs=False, n=False, token_cap_field="max_tokens")


@pytest.fixture
def echo_provider(monkeypatch):
    """A provider registered the way a new one would be: one entry, no other module touched."""
    spec = providers.ProviderSpec(name="echo", display_name="Echo test LLM", capabilities=ECHO_CAPABILITIES,
                                  build=lambda **_: None)
    monkeypatch.setitem(providers.PROVIDERS, "echo", spec)
    return spec


def test_a_registered_provider_is_offered_and_its_capabilities_are_checked(client, project, lead, echo_provider):
    client.force_login(lead)
    assert "Echo test LLM" in client.get(reverse("generation_start", args=[project.id])).content.decode()
    with pytest.raises(JobConfigError, match="response_format: Echo test LLM cannot answer in this format"):
        options_validate(mode=JobMode.LABEL_CONDITIONED, provider="echo", options={"response_format": "json_schema"})
    chosen = options_validate(mode=JobMode.LABEL_CONDITIONED, provider="echo",
                              options={"response_format": "json_object", "steps": 2, "exemplars": 0})
    assert chosen.steps == 2  # an LLM may self-check, and needs no seeds
    with pytest.raises(JobConfigError, match="exemplars: offline augmentation"):
        options_validate(mode=JobMode.LABEL_CONDITIONED, provider="offline", options={"exemplars": 0})
    endpoint = Endpoint(name="local", base_url="http://127.0.0.1:9/v1", model="echo-1", key_variable="")
    assert providers.provider_spec("echo").job_model("", endpoint) == "echo-1"
    assert providers.provider_spec("echo").job_model("echo-2", endpoint) == "echo-2"
    assert providers.provider_spec("offline").job_model("gpt-4o", endpoint) == ""


def test_without_n_or_logprobs_labelling_asks_prompt_variants(project, lead, llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    provider = providers.OpenAIProvider(model="m", base_url=llm_server.base_url, timeout=5,
                                        capabilities=dataclasses.replace(ECHO_CAPABILITIES,
                                                                         response_formats=providers.RESPONSE_FORMATS))
    for text in ("A wonderful, moving film; I loved it.", "Terrible acting and a boring plot."):
        make_item(project, text, status=Status.NEEDS_REVIEW, proposed=())
    job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_POOL, provider="openai",
                              options={"count": 10, "consistency": "samples", "consistency_k": 3}, enqueue=False)
    services.job_run(job_id=job.id, token="t", provider=provider)
    job.refresh_from_db()
    assert job.produced == 2
    assert not any(r.get("logprobs") or r.get("n") for r in llm_server.requests)
    assert len({r["messages"][1]["content"].splitlines()[0] for r in llm_server.requests}) == 3
    assert {i.provenance["labelling"]["answers"] for i in Item.objects.filter(project=project)} == {3}


def test_the_output_cap_goes_in_the_field_the_endpoint_honours(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    call = providers.ChatCall(messages=[{"role": "user", "content": "Write 3 samples whose label is positive."}],
                              max_tokens=5)
    for capabilities, field in ((providers.OPENAI_CAPABILITIES, "max_completion_tokens"),
                                (ECHO_CAPABILITIES, "max_tokens")):
        provider = providers.OpenAIProvider(model="m", base_url=llm_server.base_url, capabilities=capabilities)
        result = provider.chat(call)
        sent = llm_server.requests[-1]
        assert sent[field] == 5 and len({"max_tokens", "max_completion_tokens"} & set(sent)) == 1
        assert result.completion_tokens == 5


def test_the_job_page_shows_the_settings_the_job_ran_with(client, seeded, lead):
    job = services.job_create(project=seeded, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="offline",
                              options={"count": 4, "samples_per_request": 2, "price_prompt_per_1k": "0.25",
                                       "templates": {"generate": "Write $count samples labelled $label. Short."}},
                              enqueue=False)
    client.force_login(lead)
    body = client.get(reverse("generation_job", args=[seeded.id, job.id])).content.decode()
    assert "offline augmentation (no LLM)" in body and "The best the endpoint supports" in body
    assert "0.25 / 0 USD" in body and "<td>generate</td>" in body
    GenerationJob.objects.filter(pk=job.pk).update(config={})
    assert "not readable" in client.get(reverse("generation_job", args=[seeded.id, job.id])).content.decode()
