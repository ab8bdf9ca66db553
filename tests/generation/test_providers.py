"""The providers against the loopback server: retries, Retry-After, timeouts, bad bodies, concurrency, logprobs, keys."""
import json
import logging
import random

import pytest

from generation import prompts
from generation.parsing import label_probs_from_logprobs, parse_verdict
from generation.providers import (
    ChatCall,
    OfflineProvider,
    OpenAIProvider,
    ProviderConfigError,
    ProviderError,
    eda_augment,
    label_word_votes,
    retry_after_seconds,
    run_concurrently,
)

SPEC = prompts.TaskSpec(task="Sentiment of movie reviews.", labels=(
    prompts.LabelInfo("positive", "the reviewer liked it"), prompts.LabelInfo("negative", "the reviewer did not")))


def label_call(text="A wonderful, moving film; I loved it.", **kw):
    messages = prompts.labelling_messages(SPEC, prompts.DEFAULT_TEMPLATES, text=text)
    fmt = prompts.labelling_format(labels=SPEC.label_names, multi_label=False, mode="json_schema")
    return ChatCall(messages=messages, response_format=fmt, temperature=0, **kw)


@pytest.fixture
def provider(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    sleeps = []
    p = OpenAIProvider(model="synth-test-1", base_url=llm_server.base_url, timeout=2, max_retries=3,
                       backoff_base=0.01, sleep=lambda s: sleeps.append(s))
    p.sleeps = sleeps
    return p


def test_it_labels_through_the_real_client(provider):
    result = provider.chat(label_call())
    verdict = parse_verdict(result.choices[0].content, labels=SPEC.label_names, multi_label=False)
    assert verdict.labels == ["positive"]
    assert result.prompt_tokens > 0 and result.response_id.startswith("chatcmpl-")
    assert result.retries == 0


def test_it_finds_the_label_token_in_logprobs(provider):
    result = provider.chat(label_call(logprobs=True, top_logprobs=5))
    probs = label_probs_from_logprobs(result.choices[0].logprobs, SPEC.label_names, "positive")
    assert set(probs) == {"positive", "negative"}
    assert probs["positive"] > probs["negative"]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)


def test_logprobs_are_none_when_the_endpoint_has_none(provider, llm_server):
    llm_server.logprobs_supported = False
    result = provider.chat(label_call(logprobs=True, top_logprobs=5))
    assert result.choices[0].logprobs is None


def test_it_retries_rate_limits_honouring_retry_after(provider, llm_server):
    llm_server.configure(retry_after=0.7)
    llm_server.queue_faults("429", "429")
    result = provider.chat(label_call())
    assert result.retries == 2
    assert all(0.7 <= s <= 0.8 for s in provider.sleeps), provider.sleeps
    assert llm_server.stats["429"] == 2


def test_it_backs_off_exponentially_on_server_errors(provider, llm_server):
    llm_server.queue_faults("500", "503", "500")
    result = provider.chat(label_call())
    assert result.retries == 3
    # Exponential with jitter: the n-th wait lies in [base*2^n/2, base*2^n].
    for n, waited in enumerate(provider.sleeps):
        assert 0.01 * 2 ** n / 2 <= waited <= 0.01 * 2 ** n


def test_it_gives_up_after_max_retries(provider, llm_server):
    llm_server.queue_faults("503", "503", "503", "503")
    with pytest.raises(ProviderError) as err:
        provider.chat(label_call())
    assert err.value.kind == "http_503" and err.value.retries == 3 and err.value.transient


def test_a_hang_times_out_and_is_retried(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    llm_server.configure(hang_seconds=3)
    llm_server.queue_faults("hang")
    p = OpenAIProvider(model="m", base_url=llm_server.base_url, timeout=0.3, max_retries=1, backoff_base=0.01)
    assert p.chat(label_call()).retries == 1


def test_a_malformed_body_is_retried_not_raised_as_json_error(provider, llm_server):
    llm_server.queue_faults("malformed_body")
    assert provider.chat(label_call()).retries == 1
    llm_server.queue_faults(*["malformed_body"] * 4)
    with pytest.raises(ProviderError) as err:
        provider.chat(label_call())
    assert err.value.kind == "bad_body"


def test_client_errors_are_not_retried(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    llm_server.api_key = "right"
    p = OpenAIProvider(model="m", base_url=llm_server.base_url, max_retries=3, sleep=lambda s: None)
    with pytest.raises(ProviderError) as err:
        p.chat(label_call())
    assert err.value.kind == "http_401" and err.value.retries == 0 and not err.value.transient


def test_concurrency_never_exceeds_the_limit(provider, llm_server):
    llm_server.latency = 0.05
    results = run_concurrently(lambda _: provider.chat(label_call()), list(range(12)), limit=3)
    assert len(results) == 12
    assert llm_server.max_in_flight == 3


def test_the_api_key_comes_from_the_environment_and_never_leaks(provider, llm_server, caplog):
    caplog.set_level(logging.DEBUG)
    llm_server.queue_faults("500")
    provider.chat(label_call())
    assert "sk-test-secret-123" not in repr(provider)
    assert "sk-test-secret-123" not in caplog.text


def test_without_a_key_or_base_url_it_refuses_to_start(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
        OpenAIProvider(model="m")


def test_retry_after_reads_seconds_and_milliseconds():
    assert retry_after_seconds({"retry-after": "2"}) == 2
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({}) is None


def test_offline_generation_augments_seeds_deterministically():
    call = ChatCall(messages=[], intent={"kind": "generate", "target": "positive", "k": 3, "seed_key": "s",
                                         "seeds": ["What a lovely little film about friendship and loss"]})
    first = OfflineProvider().chat(call)
    samples = json.loads(first.choices[0].content)["samples"]
    assert len(samples) == 3 and all(s["label"] == "positive" for s in samples)
    assert all(s["text"] != "What a lovely little film about friendship and loss" for s in samples)
    assert OfflineProvider().chat(call).choices[0].content == first.choices[0].content
    assert first.prompt_tokens == 0 and first.model == "offline-augmentation"


def test_offline_generation_without_seeds_fails_with_a_reason():
    with pytest.raises(ProviderError) as err:
        OfflineProvider().chat(ChatCall(messages=[], intent={"kind": "generate", "target": "x", "k": 1}))
    assert err.value.kind == "no_seeds"


def test_offline_labelling_matches_label_words():
    votes = label_word_votes("Who wrote Hamlet, and where was he born?",
                             {"human": ["who", "person"], "location": ["where"], "numeric": ["how many"]})
    assert votes == {"human": 1.0, "location": 1.0}
    result = OfflineProvider().chat(ChatCall(messages=[], intent={
        "kind": "label", "text": "How many legs does a spider have?", "label_words": {"numeric": ["how many"]}}))
    assert json.loads(result.choices[0].content) == {"label": "numeric"}


def test_eda_keeps_most_words():
    text = "the quick brown fox jumps over the lazy dog today"
    out = eda_augment(text, random.Random(1))
    assert out != text
    assert len(set(out.split()) & set(text.split())) >= 7


def test_eda_never_hands_back_its_seed_when_a_variant_exists():
    # Two changes on a short text often cancel out (swap i,j then swap j,i); every seed of the rng must still give a
    # variant that differs from the seed.
    text = "I hated the plot and the acting was terrible throughout."
    copies = [s for s in range(2000) if eda_augment(text, random.Random(s)) == text]
    assert copies == []
