"""Where completions come from: one interface, two providers.

- ``openai``: the official ``openai`` client against OpenAI or any compatible server (vLLM, Ollama, llama.cpp,
  LiteLLM). We do the retries ourselves (the client gets ``max_retries=0``) so that every retry is counted and a
  ``Retry-After`` header is honoured: exponential backoff with jitter on 429, 5xx, timeouts, dropped connections and
  unreadable bodies. The API key comes from ``OPENAI_API_KEY`` in the environment only; it is never stored, rendered
  or logged.
- ``offline``: no network and no model weights. It does not read the prompt; it answers the structured ``intent`` of a
  call with EDA-style augmentation of seed examples (generation) or label-word matching (labelling), in the same JSON
  shape an LLM would return, so parsing, filters and counting are shared. It is named "offline augmentation (no LLM)"
  everywhere and reports zero tokens.
"""
from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import openai
from django.conf import settings

OFFLINE = "offline"
OPENAI = "openai"
PROVIDER_CHOICES = [(OFFLINE, "offline augmentation (no LLM)"), (OPENAI, "OpenAI-compatible LLM")]
OFFLINE_MODEL = "offline-augmentation"

# A server asking us to wait longer than this is treated as down for this call rather than stalling a whole job.
MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class ChatCall:
    """One chat-completion request. ``intent`` says in structured form what the messages ask for; the offline
    provider answers it, LLM providers ignore it."""

    messages: list[dict]
    response_format: dict | None = None
    n: int = 1
    temperature: float | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    max_tokens: int | None = None
    seed: int | None = None
    intent: dict = field(default_factory=dict)


@dataclass
class ChatChoice:
    content: str
    finish_reason: str = "stop"
    # [{"token": str, "logprob": float, "top": [(token, logprob), ...]}] or None when the endpoint gave none.
    logprobs: list[dict] | None = None


@dataclass
class ChatResult:
    choices: list[ChatChoice]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    response_id: str = ""
    model: str = ""
    retries: int = 0
    # Label -> votes a provider counted itself (the offline label-word matcher); LLM results leave it empty.
    votes: dict[str, float] = field(default_factory=dict)


class ProviderError(Exception):
    """A call that failed for good, after the retries it was allowed. ``kind`` is a short code for counters."""

    def __init__(self, message: str, *, kind: str, retries: int = 0, transient: bool = False):
        super().__init__(message)
        self.kind = kind
        self.retries = retries
        self.transient = transient


class ProviderConfigError(Exception):
    """The provider cannot be set up (for example no API key); the job fails with this message."""


class Provider(Protocol):
    name: str
    model: str
    is_llm: bool
    max_concurrency: int

    def chat(self, call: ChatCall) -> ChatResult: ...


T = TypeVar("T")
R = TypeVar("R")


def run_concurrently(fn: Callable[[T], R], items: Sequence[T], *, limit: int) -> list[R]:
    """``[fn(x) for x in items]`` with at most ``limit`` running at once; ``fn`` must not raise."""
    if limit <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(limit, len(items)), thread_name_prefix="llm") as pool:
        return list(pool.map(fn, items))


# ---------------------------------------------------------------------------------------------------------------------
# OpenAI-compatible


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAIProvider:
    name = OPENAI
    is_llm = True

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 8,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        api_key = os.environ.get("OPENAI_API_KEY", "")
        if not api_key and not base_url:
            raise ProviderConfigError(
                "OPENAI_API_KEY is not set in the worker's environment; set it, or point OPENAI_BASE_URL at a "
                "compatible server that needs no key."
            )
        # Self-hosted compatible servers usually ignore the key, but the client insists on one.
        self._client = openai.OpenAI(
            api_key=api_key or "no-key", base_url=base_url or None, timeout=timeout, max_retries=0
        )
        self.model = model
        self.max_concurrency = max(1, max_concurrency)
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    def __repr__(self) -> str:
        # Deliberately without the client: its repr must never be the way a key reaches a log.
        return f"OpenAIProvider(model={self.model!r})"

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        with self._rng_lock:
            jitter = self._rng.random()
        if retry_after is not None:
            # The server said when; a little jitter keeps concurrent callers from all returning at the same instant.
            return min(retry_after, MAX_RETRY_AFTER_SECONDS) + 0.1 * jitter * max(retry_after, 0.1)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return ceiling / 2 + jitter * ceiling / 2

    def chat(self, call: ChatCall) -> ChatResult:
        retries = 0
        while True:
            try:
                completion = self._client.chat.completions.create(**self._params(call))
                return self._result(completion, retries)
            except openai.APIStatusError as exc:
                status = exc.status_code
                transient = status == 429 or status >= 500
                kind = "rate_limited" if status == 429 else f"http_{status}"
                error, retry_after = exc, retry_after_seconds(exc.response.headers)
                message = f"HTTP {status}: {exc.message}"[:300]
            except openai.APITimeoutError as exc:
                transient, kind, error, retry_after, message = True, "timeout", exc, None, "request timed out"
            except openai.APIConnectionError as exc:
                transient, kind, error, retry_after, message = True, "connection", exc, None, "connection failed"
            except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                # The client raises a bare JSONDecodeError on a cut-off body: a glitch worth another try.
                transient, kind, error, retry_after = True, "bad_body", exc, None
                message = f"unreadable response body: {exc}"[:300]
            if not transient or retries >= self.max_retries:
                raise ProviderError(message, kind=kind, retries=retries, transient=transient) from error
            self._sleep(self._backoff(retries, retry_after))
            retries += 1

    def _params(self, call: ChatCall) -> dict:
        params: dict[str, Any] = {"model": self.model, "messages": call.messages}
        if call.n != 1:
            params["n"] = call.n
        if call.response_format:
            params["response_format"] = call.response_format
        if call.temperature is not None:
            params["temperature"] = call.temperature
        if call.logprobs:
            params["logprobs"] = True
            if call.top_logprobs:
                params["top_logprobs"] = call.top_logprobs
        if call.max_tokens:
            params["max_completion_tokens"] = call.max_tokens
        if call.seed is not None:
            params["seed"] = call.seed
        return params

    @staticmethod
    def _result(completion: Any, retries: int) -> ChatResult:
        choices = []
        for choice in completion.choices or []:
            tokens = None
            if choice.logprobs is not None and choice.logprobs.content:
                tokens = [
                    {"token": t.token, "logprob": t.logprob,
                     "top": [(alt.token, alt.logprob) for alt in (t.top_logprobs or [])]}
                    for t in choice.logprobs.content
                ]
            content = choice.message.content if choice.message is not None else None
            choices.append(ChatChoice(content=content or "", finish_reason=choice.finish_reason or "", logprobs=tokens))
        usage = completion.usage
        return ChatResult(
            choices=choices,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            response_id=completion.id or "",
            model=completion.model or "",
            retries=retries,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Offline: rule-based, honestly not an LLM

_WORD = re.compile(r"\S+")


def eda_augment(text: str, rng: random.Random, *, alpha: float = 0.15, donor_words: Sequence[str] = ()) -> str:
    """One EDA-style variant of ``text``: random swaps, deletions and insertions of about ``alpha`` of its words.

    Synonym replacement (the fourth EDA operation) needs a thesaurus we do not ship; insertions draw from the text
    itself and from ``donor_words`` (other seeds of the same label) instead.
    """
    words = _WORD.findall(text)
    if len(words) < 2:
        return text
    changes = max(1, round(alpha * len(words)))
    pool = list(words) + list(donor_words)
    for _ in range(changes):
        operation = rng.choice(("swap", "delete", "insert"))
        if operation == "swap" and len(words) >= 2:
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
        elif operation == "delete" and len(words) > 3:
            del words[rng.randrange(len(words))]
        else:
            words.insert(rng.randrange(len(words) + 1), rng.choice(pool).strip(".,;:!?\"'"))
    return " ".join(words)


def label_word_votes(text: str, label_words: dict[str, list[str]]) -> dict[str, float]:
    """How many of each label's words (and its name) occur in ``text``, as whole words, case-insensitively."""
    lowered = " " + " ".join(re.findall(r"[\w'-]+", text.casefold())) + " "
    votes = {}
    for label, words in label_words.items():
        hits = sum(lowered.count(" " + w + " ") for w in {label.casefold(), *(w.casefold().strip() for w in words)} if w)
        if hits:
            votes[label] = float(hits)
    return votes


class OfflineProvider:
    name = OFFLINE
    model = OFFLINE_MODEL
    is_llm = False
    max_concurrency = 1

    def chat(self, call: ChatCall) -> ChatResult:
        intent = call.intent
        kind = intent.get("kind")
        if kind == "generate":
            return self._generate(intent)
        if kind == "label":
            return self._label(intent)
        raise ProviderError(f"offline augmentation cannot do '{kind}' (it is not an LLM)", kind="unsupported")

    def _generate(self, intent: dict) -> ChatResult:
        seeds: list[str] = intent.get("seeds") or []
        if not seeds:
            raise ProviderError(
                f"no accepted seed examples of label '{intent.get('target')}' to augment", kind="no_seeds"
            )
        rng = random.Random(intent.get("seed_key", ""))
        donors = [w for seed in seeds for w in _WORD.findall(seed)]
        samples = [
            {"text": eda_augment(seeds[i % len(seeds)], rng, donor_words=donors), "label": intent.get("target")}
            for i in range(int(intent.get("k", 1)))
        ]
        return ChatResult(choices=[ChatChoice(content=json.dumps({"samples": samples}))], model=self.model)

    def _label(self, intent: dict) -> ChatResult:
        votes = label_word_votes(intent.get("text", ""), intent.get("label_words") or {})
        best = max(votes, key=lambda label: (votes[label], -list(votes).index(label))) if votes else None
        return ChatResult(
            choices=[ChatChoice(content=json.dumps({"label": best}))], model=self.model, votes=votes
        )


def provider_for(*, name: str, model: str = "", max_concurrency: int | None = None) -> Provider:
    """The provider a job asked for, configured from settings (base URL, timeout, retries come from the operator)."""
    if name == OFFLINE:
        return OfflineProvider()
    if name == OPENAI:
        return OpenAIProvider(
            model=model or settings.OPENAI_MODEL,
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.OPENAI_TIMEOUT,
            max_concurrency=max_concurrency or settings.OPENAI_MAX_CONCURRENCY,
            max_retries=settings.OPENAI_MAX_RETRIES,
        )
    raise ProviderConfigError(f"Unknown provider '{name}'.")
