"""LLM connections and the capability probe (issue 20): named endpoints per project and per job, keys kept in the
environment, a probe that records what a server really does, and a start form that refuses an unusable connection."""
import logging
import threading

import pytest
from django.db import connection as db_connection
from django.urls import reverse

from annotation.models import Item
from generation import connections, services
from generation.checks import llm_provider_check
from generation.config import JobConfig
from generation.models import EndpointProbe, GenerationJob, JobMode, JobStatus, LLMConnection
from generation.probe import capabilities_from
from generation.providers import RESPONSE_FORMATS, Capabilities, ChatCall, OpenAIProvider, ProviderError
from tests.support.llm_server import LLMServer

KEY = "sk-MARKER-local-5e1d"
FORM = {"mode": "label_conditioned", "provider": "openai", "connection": "", "model_name": "", "count": "4",
        "samples_per_request": "2", "requests_per_batch": "2", "max_concurrency": "2", "exemplars": "1",
        "temperature": "0.9", "steps": "1", "balance_project": "on", "response_format": "auto",
        "consistency": "samples", "consistency_k": "5", "min_chars": "10", "max_chars": "2000",
        "near_duplicate": "0.8", "leakage_words": "8", "pii": "on",
        "template_system": services.prompts.DEFAULT_TEMPLATES["system"],
        "template_generate": services.prompts.DEFAULT_TEMPLATES["generate"],
        "template_label": services.prompts.DEFAULT_TEMPLATES["label"],
        "template_check": services.prompts.DEFAULT_TEMPLATES["check"]}


def connect(project, lead, server, name="local", **fields):
    return connections.connection_save(project=project, user=lead, name=name, base_url=server.base_url,
                                       model=fields.pop("model", "m"), **fields)


def probed(project, lead, server, **fields):
    saved = connect(project, lead, server, **fields)
    return saved, connections.probe_run(endpoint=connections.endpoint_of(saved)).profile


# ---------------------------------------------------------------------------------------------------------------------
# The probe


@pytest.mark.parametrize("quirks,expected", [
    ((), Capabilities(is_llm=True, needs_seeds=False, response_formats=("json_schema", "json_object", "none"),
                      logprobs=True, n=True, token_cap_field="max_completion_tokens")),
    (("llama-cpp-python",), Capabilities(is_llm=True, needs_seeds=False,
                                         response_formats=("json_object_schema", "json_object", "none"),
                                         logprobs=True, n=False, token_cap_field="max_tokens",
                                         max_concurrency=1)),
    (("llama.cpp",), Capabilities(is_llm=True, needs_seeds=False, response_formats=RESPONSE_FORMATS,
                                  logprobs=True, n=False, token_cap_field="max_completion_tokens")),
], ids=["openai-like", "llama-cpp-python", "llama.cpp"])
def test_the_probe_records_what_each_server_does(project, lead, llm_server, quirks, expected):
    # Each answer takes a quarter of a second, as a real model's would: long enough that the concurrency test reads
    # the server (three answers together take ~1x or ~3x one alone) and not how busy this machine is (with instant
    # answers, one request on a loaded machine crossed the "measurable" line and three crossed the serial ratio).
    llm_server.configure(quirks=quirks, latency=0.25)
    _, profile = probed(project, lead, llm_server)
    assert capabilities_from(profile) == expected
    assert profile["seed"]["result"] == "honoured" and profile["requests"] <= 16
    if "llama-cpp-python" in quirks:
        assert profile["formats"]["json_schema"]["result"] == "refused"
        assert "Input should be 'text' or 'json_object'" in profile["formats"]["json_schema"]["detail"]
        assert profile["token_cap"]["max_completion_tokens"]["result"] == "ignored"
        assert profile["n"] == {"result": "ignored", "detail": "1 answer for n=3"}
    if "llama.cpp" in quirks:
        assert profile["n"]["result"] == "refused" and "Only one completion choice" in profile["n"]["detail"]


def test_a_server_that_cannot_be_reached_leaves_a_reason_and_blocks_jobs(project, lead, llm_server):
    saved = connections.connection_save(project=project, user=lead, name="gone", base_url="http://127.0.0.1:9/v1",
                                        model="m")
    profile = connections.probe_run(endpoint=connections.endpoint_of(saved)).profile
    assert profile["reachable"] is False and profile["error"] == (
        "The server could not be reached, retries included.")
    assert capabilities_from(profile) is None
    assert connections.connection_problem(connection=saved) == (
        "The last test of gone failed: The server could not be reached, retries included. Fix it and test the "
        "connection again on the Connections page.")


def test_without_adaptation_a_validation_error_in_a_500_is_refused_not_retried(llm_server):
    """What the probe sees: llama-cpp-python's 500 for json_schema is a refusal of the format, not a transient error."""
    llm_server.configure(quirks=["json_schema_500"])
    provider = OpenAIProvider(model="m", base_url=llm_server.base_url, key_variable="", max_retries=4,
                              sleep=lambda s: None, adapt=False)
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    with pytest.raises(ProviderError) as err:
        provider.chat(ChatCall(messages=[{"role": "user", "content": "hi"}], response_format=fmt))
    assert err.value.kind == "refused" and not err.value.transient and err.value.retries == 0
    assert err.value.detail["param"] == "response_format" and err.value.detail["status"] == 500
    assert llm_server.stats["requests"] == 1


def test_two_workers_never_probe_one_endpoint_at_once(transactional_db, project, lead):
    with LLMServer(seed=3, latency=0.05) as server:
        saved = connect(project, lead, server)
        endpoint = connections.endpoint_of(saved)
        barrier = threading.Barrier(2)
        results = []

        def probe():
            try:
                barrier.wait()
                results.append(connections.probe_run(endpoint=endpoint))
            finally:
                db_connection.close()

        threads = [threading.Thread(target=probe) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(r is None for r in results) == [False, True]
        one = next(r for r in results if r is not None)
        assert server.stats["requests"] == one.profile["requests"]
    assert EndpointProbe.objects.get().started_at is None


# ---------------------------------------------------------------------------------------------------------------------
# Connections: per project, per job, keys in the environment only


def test_a_connection_names_a_key_variable_the_operator_allows(project, lead, llm_server, settings):
    settings.LLM_KEY_VARIABLES = ["LOCAL_KEY", "OPENAI_API_KEY@api.openai.com"]
    with pytest.raises(connections.ConnectionProblem) as err:
        connect(project, lead, llm_server, key_variable="SECRET_KEY")
    assert err.value.problems == [("key_variable", "SECRET_KEY is not one of the key variables the operator allows "
                                                   "connections to use (LLM_KEY_VARIABLES: LOCAL_KEY, "
                                                   "OPENAI_API_KEY).")]
    with pytest.raises(connections.ConnectionProblem, match="allows OPENAI_API_KEY to be sent to api.openai.com only"):
        connect(project, lead, llm_server, key_variable="OPENAI_API_KEY")
    with pytest.raises(connections.ConnectionProblem, match="Leave credentials out of the URL"):
        connections.connection_save(project=project, user=lead, name="x", base_url="http://u:sk-1@127.0.0.1/v1",
                                    model="m")
    assert connect(project, lead, llm_server, key_variable="LOCAL_KEY").key_variable == "LOCAL_KEY"
    assert not LLMConnection.objects.exclude(key_variable="LOCAL_KEY").exists()


def test_a_job_remembers_the_connection_it_started_with(seeded, lead, llm_server, settings):
    saved = connect(seeded, lead, llm_server, model="first-model")
    job = services.job_create(project=seeded, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                              connection=saved, options={"count": 2, "samples_per_request": 2}, enqueue=False)
    connections.connection_save(project=seeded, user=lead, connection=saved, name="local",
                                base_url="http://127.0.0.1:9/v1", model="second-model")
    services.job_run(job_id=job.id, token="t")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.connection_id == saved.id
    assert JobConfig.load(job.config).connection.base_url == llm_server.base_url
    assert {r["model"] for r in llm_server.requests} == {"first-model"}
    connections.connection_delete(connection=saved)
    job.refresh_from_db()
    assert job.connection_id is None and JobConfig.load(job.config).connection.model == "first-model"


def test_one_project_default_at_a_time(project, lead, llm_server):
    first = connect(project, lead, llm_server, name="one", is_default=True)
    second = connect(project, lead, llm_server, name="two", is_default=True)
    first.refresh_from_db()
    assert not first.is_default and second.is_default
    choices, initial = connections.connection_choices(project=project)
    assert initial == str(second.id) and choices[0][0] == ""


def test_the_key_is_never_stored_shown_or_logged(client, seeded, lead, llm_server, settings, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    settings.LLM_KEY_VARIABLES = ["LOCAL_KEY"]
    monkeypatch.setenv("LOCAL_KEY", KEY)
    llm_server.api_key = KEY
    saved, profile = probed(seeded, lead, llm_server, key_variable="LOCAL_KEY")
    assert profile["reachable"]
    job = services.job_create(project=seeded, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                              connection=saved, options={"count": 2, "samples_per_request": 2}, enqueue=False)
    services.job_run(job_id=job.id, token="t")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED  # the server saw the key
    rows = [*LLMConnection.objects.values(), *EndpointProbe.objects.values(), *GenerationJob.objects.values(),
            *Item.objects.filter(generation_job_id=job.id).values()]
    assert all(KEY not in str(row) for row in rows)
    assert not [r for r in caplog.records if KEY in r.getMessage() or KEY in str(r.__dict__)]
    client.force_login(lead)
    pages = {reverse("generation_connections", args=[seeded.id]): "LOCAL_KEY",
             reverse("generation_connection", args=[seeded.id, saved.id]): "LOCAL_KEY",
             reverse("generation_job", args=[seeded.id, job.id]): "local"}
    for url, shown in pages.items():
        body = client.get(url).content.decode()
        assert KEY not in body and shown in body, url


# ---------------------------------------------------------------------------------------------------------------------
# The pages


def test_adding_a_connection_saves_it_and_queues_its_probe(client, project, lead, llm_server,
                                                          django_capture_on_commit_callbacks):
    client.force_login(lead)
    url = reverse("generation_connections", args=[project.id])
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {"name": "local llama", "base_url": llm_server.base_url, "model": "smollm2",
                                     "key_variable": "", "is_default": "on"})
    assert response.status_code == 302 and response["Location"] == url
    saved = LLMConnection.objects.get()
    assert (saved.name, saved.model, saved.is_default) == ("local llama", "smollm2", True)
    assert len(callbacks) == 1  # the probe task, sent once the row is committed
    body = client.get(url).content.decode()
    assert "local llama" in body and "Testing" in body and 'hx-trigger="every 1s"' in body


def test_a_bad_connection_is_refused_next_to_its_field(client, project, lead):
    client.force_login(lead)
    response = client.post(reverse("generation_connections", args=[project.id]),
                           {"name": "x", "base_url": "ftp://example.org", "model": "m", "key_variable": "HOME"})
    form = response.context["form"]
    assert form.errors["base_url"] == ["Use an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/v1."]
    assert "HOME is not one of the key variables" in form.errors["key_variable"][0]
    assert not LLMConnection.objects.exists()


def test_testing_a_connection_with_and_without_htmx(client, project, lead, llm_server, settings):
    settings.OPENAI_BASE_URL = llm_server.base_url
    client.force_login(lead)
    url = reverse("generation_connection_test", args=[project.id])
    fragment = client.post(url, {"connection": "default"}, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<section id="connections"') and 'hx-trigger="every 1s"' in fragment
    assert "already under way" in client.post(url, {"connection": "default"},
                                              headers={"HX-Request": "true"}).content.decode()
    # The worker's part, as the task runs it; then the panel shows the profile and stops polling.
    connections.connection_probe_run(connection_id=None)
    panel = client.get(reverse("generation_connections", args=[project.id]),
                       headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in panel and "Best response format" in panel and "json_schema" in panel
    assert client.post(url, {"connection": "default"}).status_code == 302


def test_a_lead_edits_and_deletes_a_connection(client, project, lead, llm_server):
    saved = connect(project, lead, llm_server)
    client.force_login(lead)
    url = reverse("generation_connection", args=[project.id, saved.id])
    assert client.get(url).status_code == 200
    client.post(url, {"name": "renamed", "base_url": llm_server.base_url, "model": "m2", "key_variable": ""})
    saved.refresh_from_db()
    assert (saved.name, saved.model) == ("renamed", "m2")
    client.post(reverse("generation_connection_delete", args=[project.id, saved.id]))
    assert not LLMConnection.objects.exists()


# ---------------------------------------------------------------------------------------------------------------------
# The start form


def test_a_job_without_a_usable_connection_is_refused_by_the_form(client, seeded, lead, settings, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings.OPENAI_BASE_URL = ""
    client.force_login(lead)
    response = client.post(reverse("generation_start", args=[seeded.id]), FORM)
    assert response.context["form"].errors["connection"] == [
        "No LLM endpoint is configured for this deployment: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (a "
        "compatible server), or choose one of the project's connections."]
    assert not GenerationJob.objects.exists()
    settings.LLM_KEY_VARIABLES = ["LOCAL_KEY"]
    saved = connections.connection_save(project=seeded, user=lead, name="needs a key",
                                        base_url="http://127.0.0.1:9/v1", model="m", key_variable="LOCAL_KEY")
    response = client.post(reverse("generation_start", args=[seeded.id]), {**FORM, "connection": str(saved.id)})
    assert response.context["form"].errors["connection"] == [
        "LOCAL_KEY is not set in this deployment's environment."]
    assert not GenerationJob.objects.exists()


def test_the_form_checks_the_format_against_what_the_probe_found(client, seeded, lead, llm_server):
    llm_server.configure(quirks=["llama-cpp-python"])
    saved, _ = probed(seeded, lead, llm_server, name="llama")
    client.force_login(lead)
    url = reverse("generation_start", args=[seeded.id])
    response = client.post(url, {**FORM, "connection": str(saved.id), "response_format": "json_schema"})
    assert response.context["form"].errors["response_format"] == [
        "llama cannot answer in this format (its probe found so)."]
    response = client.post(url, {**FORM, "connection": str(saved.id)})
    job = GenerationJob.objects.get()
    assert response["Location"] == reverse("generation_job", args=[seeded.id, job.id])
    assert job.connection_id == saved.id and job.model_name == "m"


def test_llm_provider_is_the_provider_the_start_form_proposes(client, project, lead, settings):
    settings.LLM_PROVIDER = "openai"
    client.force_login(lead)
    form = client.get(reverse("generation_start", args=[project.id])).context["form"]
    assert form["provider"].value() == "openai"


def test_an_unknown_llm_provider_is_named_by_the_system_check(settings):
    settings.LLM_PROVIDER = "gpt"
    errors = llm_provider_check(None)
    assert [e.id for e in errors] == ["generation.E001"] and "LLM_PROVIDER='gpt'" in errors[0].msg
    settings.LLM_PROVIDER = "openai"
    assert llm_provider_check(None) == []
