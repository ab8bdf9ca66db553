"""Jobs against OpenAI-compatible servers as they really are (issue 20): each quirk of llama-cpp-python and llama.cpp's
server is a mode of the loopback server, and a job against it must produce what a lead would want: samples stored,
labels with honest confidences, a format stepped down once instead of every request failed, and a job that says why
when nothing could be done."""
import json

import pytest

from annotation.models import Item, Label, Status
from generation import connections, services
from generation.models import JobEvent, JobMode, JobStatus
from tests.support.factories import make_item
from tests.support.jobs import start
from tests.support.llm_server import LLAMA_CPP_N_ERROR

POOL = ["A wonderful, moving film; I loved it.", "Terrible acting and a boring plot.",
        "The best concert I have seen, brilliant.", "An awful, dull evening, a waste."]


def pool(project):
    return [make_item(project, text, status=Status.NEEDS_REVIEW, proposed=()) for text in POOL]


def label_pool(project, lead, **options):
    return start(project, lead, mode=JobMode.LABEL_POOL, **{"count": 100, "requests_per_batch": 4, **options})


def test_a_refused_json_schema_is_stepped_down_once_and_the_job_stores_its_samples(seeded, lead, llm):
    """The issue's run: llama-cpp-python answers json_schema with a 500 validation error. Before, each request was
    retried four times as transient and the job 'succeeded' with 0 of 10 stored."""
    llm.configure(quirks=["llama-cpp-python"])
    job = start(seeded, lead, count=10, samples_per_request=5, requests_per_batch=2, max_concurrency=1)
    assert job.status == JobStatus.SUCCEEDED
    assert job.produced + job.filtered == 10 and job.failed == 0
    formats = [r.get("response_format", {}).get("type") for r in llm.requests]
    # One refusal, then json_object with the schema for every request after it: no retries of the 500.
    assert formats == ["json_schema", "json_object", "json_object"]
    assert "schema" in llm.requests[1]["response_format"]
    assert llm.stats["refused"] == 1 and job.retries == 1
    refusal = job.endpoint["adaptations"][0]
    assert refusal.startswith("The server refused the json_schema response format (HTTP 500")
    assert "Input should be 'text' or 'json_object'" in refusal
    assert JobEvent.objects.filter(job=job, kind="adapted", message=refusal).exists()
    assert job.outcome.startswith("10 of 10 samples stored: ")


def test_a_refused_n_is_dropped_once_not_retried_as_a_500(project, lead, llm):
    """llama.cpp's server refuses n with a 500 whose message is a validation error: it is not an outage to retry."""
    llm.configure(quirks=["llama.cpp"])
    llm.logprobs_supported = False
    pool(project)
    job = label_pool(project, lead, consistency="samples", consistency_k=3, max_concurrency=1)
    assert job.status == JobStatus.SUCCEEDED and job.produced == 4
    assert sum(1 for r in llm.requests if r.get("n", 1) != 1) == 1 and llm.stats["refused"] == 1
    assert any(LLAMA_CPP_N_ERROR in a and "refused n" in a for a in job.endpoint["adaptations"])


def test_a_job_that_stored_nothing_fails_with_the_reason_in_one_sentence(seeded, lead, llm):
    llm.api_key = "right"
    job = start(seeded, lead, count=10, samples_per_request=5, requests_per_batch=2)
    assert job.status == JobStatus.FAILED
    assert job.outcome == ("The server refused the API key (HTTP 401: Incorrect API key provided.): 10 of 10 samples "
                           "failed.")
    assert JobEvent.objects.filter(job=job, kind="failed", message=job.outcome).exists()
    assert job.retries == 0


def test_a_prompt_over_the_context_window_fails_the_job_with_that_reason(seeded, lead, llm):
    llm.configure(context_window=50)
    job = start(seeded, lead, count=4, samples_per_request=2, requests_per_batch=2)
    assert job.status == JobStatus.FAILED
    assert job.outcome.startswith("The prompt does not fit the model's context window (HTTP 400: This model's "
                                  "maximum context length is 50 tokens.")
    assert job.outcome.endswith(": 4 of 4 samples failed.")


def test_a_partial_failure_says_how_many_and_why(seeded, lead, llm):
    llm.queue_faults("500", "500", "500", "500")  # the first request fails for good (three retries)
    job = start(seeded, lead, count=10, samples_per_request=5, requests_per_batch=2, max_concurrency=1)
    assert job.status == JobStatus.SUCCEEDED
    assert job.failed == 5 and job.failed_by_reason == {"http_500": 5}
    assert job.outcome == ("5 of 10 samples stored (5 for routing, 0 filtered); 5 not: The server failed (HTTP 500: "
                           "The server had an error while processing your request. Sorry about that!), retries "
                           "included (5).")


@pytest.mark.parametrize("quirk", ["n_ignored", "n_refused"])
def test_without_n_self_consistency_asks_k_times_and_divides_by_the_answers_received(project, lead, llm, quirk):
    llm.configure(quirks=[quirk])
    llm.logprobs_supported = False
    items = pool(project)
    job = label_pool(project, lead, consistency="samples", consistency_k=4, max_concurrency=1)
    assert job.produced == 4
    for item in items:
        item.refresh_from_db()
        labelling = item.provenance["labelling"]
        assert labelling["method"] == "self-consistency" and labelling["answers"] == 4
        assert sum(item.llm_votes.values()) == 4
        assert item.llm_confidence == max(item.llm_votes.values()) / 4
    # n was asked for once; after the server ignored or refused it, each answer was a request of its own.
    assert sum(1 for r in llm.requests if r.get("n", 1) != 1) == 1
    assert sum(1 for a in job.endpoint["adaptations"] if "n=3" in a or "refused n" in a) == 1


def test_one_answer_is_never_a_confidence_of_one(project, lead, llm):
    """Every extra answer fails: the first answer alone gives a label but no confidence."""
    llm.logprobs_supported = False
    item = make_item(project, POOL[0], status=Status.NEEDS_REVIEW, proposed=())
    llm.queue_faults("ok", *["wrong_schema"] * 3)
    job = label_pool(project, lead, consistency="variants", consistency_k=4, max_concurrency=1)
    item.refresh_from_db()
    assert job.produced == 1 and job.malformed == 3
    assert item.proposed_labels == ["positive"] and item.llm_confidence is None
    assert item.provenance["labelling"]["answers"] == 1


def test_an_ignored_max_completion_tokens_moves_the_cap_to_max_tokens(seeded, lead, llm):
    """llama-cpp-python ignores max_completion_tokens: a completion far over its cap shows it, and the job sends
    max_tokens from then on."""
    llm.configure(quirks=["max_completion_tokens_ignored"])
    runaway = '{"samples": [' + ", ".join(['{"text": "on and on and on", "label": "positive"}'] * 200) + "]}"
    answers = iter([runaway])
    llm.brain = lambda request: next(answers, None) or json.dumps(
        {"samples": [{"text": "A wonderful film with a brilliant cast, truly.", "label": "positive"}]})
    start(seeded, lead, count=3, samples_per_request=1, requests_per_batch=1, max_concurrency=1,
          labels=["positive"], filters={"max_chars": 60, "near_duplicate": 0})
    fields = [next(f for f in ("max_completion_tokens", "max_tokens") if f in r) for r in llm.requests]
    assert fields == ["max_completion_tokens", "max_tokens", "max_tokens"]


def test_unconstrained_logprobs_give_the_label_probability_over_label_tokens_only(project, lead, llm):
    """Logprobs from before the grammar: the label is two tokens and forbidden tokens hold 45% of the mass. The
    confidence must match what the same model gives with clean logprobs, renormalised over the labels."""
    items = pool(project)
    clean = label_pool(project, lead)
    confidences = {}
    for item in items:
        item.refresh_from_db()
        confidences[item.text] = item.llm_confidence
        Item.objects.filter(pk=item.pk).update(proposed_labels=[], llm_confidence=None)
    llm.configure(quirks=["unconstrained_logprobs"])
    messy = label_pool(project, lead)
    assert clean.produced == messy.produced == 4
    for item in items:
        item.refresh_from_db()
        assert item.provenance["labelling"]["method"] == "logprobs"
        assert set(item.provenance["labelling"]["label_probs"]) <= {"positive", "negative"}
        # The second token of the label carries a probability just under 1; nothing else may differ.
        assert item.llm_confidence == pytest.approx(confidences[item.text], abs=0.03)


def test_a_verbalised_answer_outside_the_labels_is_an_abstention_not_an_error(project, lead, llm):
    llm.brain = lambda request: '{"label": "maybe"}'
    items = pool(project)
    job = label_pool(project, lead, consistency_k=2, max_concurrency=1)
    assert job.status == JobStatus.SUCCEEDED and job.malformed == 0
    assert job.failed_by_reason == {"unmatched_label": 4}
    # One answer and one more for self-consistency per item: no parse retries.
    assert len(llm.requests) == 8
    assert job.outcome == ("0 of 4 items labelled; 4 not: The model answered with something that is none of the "
                           "labels (4).")
    assert all(Item.objects.get(pk=i.pk).proposed_labels == [] for i in items)


def test_a_label_word_is_read_as_its_label(project, lead, llm):
    """A verbaliser: a model answering with one of a label's words ("great") has named that label."""
    Label.objects.filter(project=project, name="positive").update(label_words=["great", "good"])
    llm.brain = lambda request: "Great." if request.get("response_format") is None else '{"label": "great"}'
    item = pool(project)[0]
    job = label_pool(project, lead, response_format="none", consistency_k=2, max_concurrency=1)
    item.refresh_from_db()
    assert job.produced == 4 and item.proposed_labels == ["positive"]


def test_a_project_connection_is_probed_before_its_first_job_and_the_job_uses_what_it_found(seeded, lead, llm):
    llm.configure(quirks=["llama-cpp-python"])
    connection = connections.connection_save(project=seeded, user=lead, name="local llama", base_url=llm.base_url,
                                             model="smollm2")
    job = services.job_create(project=seeded, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                              connection=connection, options={"count": 4, "samples_per_request": 2,
                                                              "requests_per_batch": 2, "exemplars": 1},
                              enqueue=False)
    llm.reset()
    services.job_run(job_id=job.id, token="t")
    job.refresh_from_db()
    assert JobEvent.objects.filter(job=job, kind="probe").exists()
    generation = [r for r in llm.requests if "Write 2 new samples" in str(r["messages"])]
    assert len(generation) == 2
    assert all(r["response_format"]["type"] == "json_object" and "schema" in r["response_format"]
               for r in generation)
    assert all("max_tokens" in r and "max_completion_tokens" not in r for r in generation)
    assert job.endpoint["format"] == "json_object_schema" and job.endpoint["cap_field"] == "max_tokens"
    assert job.endpoint["n"] is False and job.endpoint["probed"]
    assert job.endpoint["adaptations"] == [] and job.status == JobStatus.SUCCEEDED
    assert job.model_name == "smollm2" and all(r["model"] == "smollm2" for r in generation)


def test_a_one_at_a_time_server_gets_one_request_at_a_time(seeded, lead, llm):
    """llama-cpp-python queues concurrent requests behind one model: the probe measures it, and a job that asked for
    eight at once sends one at a time, so no request waits out its timeout in the server's queue."""
    llm.configure(quirks=["one_at_a_time"], latency=0.4)
    connection = connections.connection_save(project=seeded, user=lead, name="serial", base_url=llm.base_url,
                                             model="m")
    profile = connections.probe_run(endpoint=connections.endpoint_of(connection)).profile
    assert profile["concurrency"]["limit"] == 1, profile["concurrency"]
    llm.configure(latency=0.05)
    llm.reset()
    job = services.job_create(project=seeded, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                              connection=connection, options={"count": 8, "samples_per_request": 2,
                                                              "requests_per_batch": 4, "max_concurrency": 8},
                              enqueue=False)
    services.job_run(job_id=job.id, token="t")
    job.refresh_from_db()
    assert job.produced + job.filtered == 8 and job.endpoint["concurrency"] == 1
    assert llm.max_in_flight == 1
