"""Behaviour of the loopback LLM server, driven through the real ``openai`` client as the app will drive it."""

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.support.llm_server import HOSTILE_FORMULA, HOSTILE_IMG, HOSTILE_SCRIPT, LLMServer

LABEL_PROMPT = "Classify the sentiment of the review.\nLabels: positive, negative\nText: {text}"
SENTIMENT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "Verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
            "required": ["label"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
def srv():
    with LLMServer(seed=1) as server:
        yield server


def make_client(server, timeout=5.0):
    return openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=timeout)


@pytest.fixture
def api(srv):
    with make_client(srv) as c:
        yield c


def ask(api, content="Say something about tea.", **kwargs):
    return api.chat.completions.create(
        model="synth-test-1", messages=[{"role": "user", "content": content}], **kwargs
    )


def outcome(api):
    try:
        ask(api, response_format={"type": "json_object"})
    except openai.APIStatusError as err:
        return str(err.status_code)
    except ValueError:
        return "malformed"
    return "200"


def test_it_answers_a_plain_completion(srv, api):
    completion = ask(api, "What is the capital of France?")

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.role == "assistant"
    assert "france" in completion.choices[0].message.content.lower()
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert srv.requests[-1]["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert srv.stats == {"requests": 1, "ok": 1}


def test_n_gives_that_many_choices(api):
    completion = ask(api, n=3)

    assert [choice.index for choice in completion.choices] == [0, 1, 2]


def test_logprobs_carry_the_label_and_its_alternatives(api):
    completion = ask(api, LABEL_PROMPT.format(text="A wonderful, brilliant film; I loved it."),
                     logprobs=True, top_logprobs=2)

    choice = completion.choices[0]
    first = choice.logprobs.content[0]
    assert choice.message.content == "positive"
    assert first.token == "positive"
    assert [alt.token for alt in first.top_logprobs] == ["positive", "negative"]
    assert first.logprob == first.top_logprobs[0].logprob
    assert first.top_logprobs[0].logprob > first.top_logprobs[1].logprob
    assert bytes(first.bytes).decode() == "positive"


def test_it_ignores_logprobs_when_switched_off(srv, api):
    srv.logprobs_supported = False

    completion = ask(api, LABEL_PROMPT.format(text="Great fun."), logprobs=True, top_logprobs=2)

    assert completion.choices[0].logprobs is None


def test_it_labels_by_keyword_overlap_in_the_requested_schema(api):
    def label(text):
        completion = ask(api, f"Text: {text}", response_format=SENTIMENT_SCHEMA, temperature=0)
        return json.loads(completion.choices[0].message.content)

    assert label("Boring, dull and the worst plot; a waste of time.") == {"label": "negative"}
    assert label("Excellent acting and a delightful, moving story.") == {"label": "positive"}


def test_it_writes_the_requested_number_of_distinct_samples(api):
    completion = ask(api, "Write 5 samples whose label is spam.\nLabels: spam, ham",
                     response_format={"type": "json_object"})

    samples = json.loads(completion.choices[0].message.content)["samples"]
    assert len(samples) == 5
    assert len({sample["text"] for sample in samples}) == 5
    assert {sample["label"] for sample in samples} == {"spam"}


def test_a_custom_brain_gives_one_answer_per_choice():
    def brain(request):
        return [f"{request['model']} #{i}" for i in range(request["n"])]

    with LLMServer(brain=brain) as server, make_client(server) as c:
        completion = ask(c, n=2)

    assert [choice.message.content for choice in completion.choices] == ["synth-test-1 #0", "synth-test-1 #1"]


def test_429_raises_rate_limit_error_with_retry_after():
    with LLMServer(faults=["429"], retry_after=2) as server, make_client(server) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            ask(c)

    assert caught.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize("fault, status", [("500", 500), ("503", 503)])
def test_server_errors_raise_internal_server_error(srv, api, fault, status):
    srv.queue_faults(fault)

    with pytest.raises(openai.InternalServerError) as caught:
        ask(api)

    assert caught.value.status_code == status


def test_hang_times_out_the_client_and_does_not_block_shutdown():
    server = LLMServer(faults=["hang"], hang_seconds=3600).start()
    try:
        with make_client(server, timeout=0.3) as c, pytest.raises(openai.APITimeoutError):
            ask(c)
    finally:
        server.stop()

    # stop() gives up waiting for requests long before the hour is over: none left means it woke the hang.
    assert server.in_flight == 0
    assert server.stats["hang"] == 1


def test_truncated_json_content_does_not_parse(srv, api):
    srv.queue_faults("truncated_json")

    completion = ask(api, "Write 2 samples.\nLabels: spam, ham", response_format={"type": "json_object"})

    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content.startswith('{"samples"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(completion.choices[0].message.content)


def test_wrong_schema_is_json_without_the_expected_keys(srv, api):
    srv.queue_faults("wrong_schema")

    completion = ask(api, "Text: lovely", response_format=SENTIMENT_SCHEMA)

    answer = json.loads(completion.choices[0].message.content)
    assert "label" not in answer
    assert answer["category"] in ("positive", "negative")


def test_hostile_content_smuggles_markup_and_a_formula_into_valid_output(srv, api):
    srv.queue_faults("hostile")

    completion = ask(api, "Write 2 samples.\nLabels: spam, ham", response_format={"type": "json_object"})

    samples = json.loads(completion.choices[0].message.content)["samples"]
    assert all(sample["label"] in ("spam", "ham") for sample in samples)
    assert samples[0]["text"].startswith(HOSTILE_FORMULA)
    assert HOSTILE_SCRIPT in samples[0]["text"] and HOSTILE_IMG in samples[0]["text"]


def test_malformed_body_reaches_the_caller_as_a_json_decode_error(srv, api):
    srv.queue_faults("malformed_body")

    # The openai client does not wrap this one: callers must catch ValueError themselves.
    with pytest.raises(json.JSONDecodeError):
        ask(api)


def test_a_fault_script_is_consumed_in_order(srv, api):
    srv.queue_faults("429", "ok", "500", "malformed_body")

    outcomes = [outcome(api) for _ in range(5)]

    assert outcomes == ["429", "200", "500", "malformed", "200"]
    assert srv.pending_faults == ()
    assert srv.stats == {"requests": 5, "429": 1, "ok": 2, "500": 1, "malformed_body": 1}


def test_random_faults_are_reproducible_by_seed():
    def run(seed):
        with LLMServer(seed=seed, fault_rate=0.2) as server, make_client(server) as c:
            return [outcome(c) for _ in range(200)], server.stats

    first, first_stats = run(seed=42)
    second, second_stats = run(seed=42)

    assert first == second
    assert first_stats == second_stats
    faults = first_stats["requests"] - first_stats["ok"]
    assert 20 <= faults <= 60
    assert len(set(first_stats) - {"requests", "ok"}) >= 3


def test_unknown_fault_names_are_refused():
    with pytest.raises(ValueError):
        LLMServer(faults=["teapot"])


def test_requests_are_served_concurrently(srv):
    srv.latency = 0.3
    barrier = threading.Barrier(6)

    def call(_):
        barrier.wait()
        with make_client(srv) as c:
            return ask(c).choices[0].message.content

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(call, range(6)))

    assert all(answers)
    assert srv.max_in_flight >= 2


def test_it_lists_its_model(api):
    assert [model.id for model in api.models.list()] == ["synth-test-1"]


def test_it_refuses_top_logprobs_without_logprobs(api):
    with pytest.raises(openai.BadRequestError):
        ask(api, top_logprobs=2)


def test_it_checks_the_api_key_when_given_one():
    with LLMServer(api_key="right") as server, make_client(server) as c:
        with pytest.raises(openai.AuthenticationError):
            ask(c)


def test_it_runs_standalone():
    script = Path(__file__).with_name("llm_server.py")
    process = subprocess.Popen([sys.executable, str(script), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().split()[-1]
        with openai.OpenAI(base_url=base_url, api_key="test", max_retries=0, timeout=5) as c:
            assert ask(c).choices[0].message.content
    finally:
        process.terminate()
        remaining, _ = process.communicate(timeout=5)

    assert '"ok": 1' in remaining
