"""Where completions come from: one interface, and the registry of providers.

Every provider is registered once, at the bottom of this module, with its name, the name people see, its
``Capabilities`` and how to build it; the form, services, engine and templates read the registry and the capabilities,
never a provider's name, so adding a provider touches this module only.

- ``openai``: the official ``openai`` client against OpenAI or any compatible server (vLLM, Ollama, llama.cpp,
  LiteLLM), at the endpoint of a connection (``generation/endpoints.py``). We do the retries ourselves (the client
  gets ``max_retries=0``) so that every retry is counted and a ``Retry-After`` header is honoured: exponential backoff
  with jitter on 429, 5xx, timeouts, dropped connections and unreadable bodies. A 5xx whose body is a request
  validation error is not transient and is not retried. A request the server refuses for one of its optional
  parameters (the response format, ``n``, logprobs, ``seed``, the output-cap field) is adapted once for the rest of
  the job and sent again: the format steps down json_schema -> json_object with a schema -> json_object -> plain text,
  ``n`` and logprobs are dropped, the cap moves to the other field. An ignored ``n`` (fewer choices than asked) or an
  ignored cap (far more tokens than allowed) is noticed the same way. Each adaptation is one sentence in
  ``adaptations`` for the job's page. The API key is read from the environment variable the endpoint names; it is
  never stored, rendered or logged.
- ``offline``: no network and no model weights. It does not read the prompt; it answers the structured ``intent`` of a
  call with EDA-style augmentation of seed examples (generation) or label-word matching (labelling), in the same JSON
  shape an LLM would return, so parsing, filters and counting are shared. It is named "offline augmentation (no LLM)"
  everywhere and reports zero tokens.

What a server sends back is untrusted: ``_read_completion`` bounds ids, drops logprobs that are not log-probabilities,
and flags (``ChatResult.problem`` / ``ChatChoice.problem``) content that is not text and usage that is not a plausible
token count, so the engine counts such an answer as malformed instead of storing it or adding its tokens.
"""
from __future__ import annotations

import dataclasses
import email.utils
import json
import math
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

from generation.endpoints import Endpoint, default_endpoint
from generation.parsing import MalformedOutput, bounded_repr, storable

OFFLINE = "offline"
OPENAI = "openai"
OFFLINE_MODEL = "offline-augmentation"

# A server asking us to wait longer than this is treated as down for this call rather than stalling a whole job.
MAX_RETRY_AFTER_SECONDS = 60.0
# Far above any context window: a usage count beyond it (or below zero) is not a count, and would overflow the job's
# counters and cost once summed.
MAX_TOKENS_PER_REQUEST = 10_000_000
# Ids and model names go into every item's provenance.
MAX_ID_CHARS = 200
# Best first. ``json_object_schema`` is llama-cpp-python's extension: ``{"type": "json_object", "schema": {...}}``.
RESPONSE_FORMATS = ("json_schema", "json_object_schema", "json_object", "none")
# A completion longer than this multiple of its cap (plus a little) means the server ignored the cap field.
CAP_IGNORED_FACTOR = 1.5


@dataclass(frozen=True)
class Capabilities:
    """What a provider's endpoint does with a request. Each provider declares its own below; a probe of a real
    endpoint can replace them for one connection (``dataclasses.replace``) and hand them to the provider it builds."""

    # Reads the prompt: self-checks and prompt templates mean something, items are sourced ``llm``, tokens are counted.
    is_llm: bool
    # Generation rewrites accepted examples of the target label, so it needs at least one exemplar.
    needs_seeds: bool
    # ``response_format`` modes it honours (json_schema, json_object, none = plain text asking for JSON).
    response_formats: tuple[str, ...]
    # Returns token logprobs with top alternatives, which give a label's probability.
    logprobs: bool
    # Returns n choices for one request with ``n`` > 1; otherwise self-consistency asks k prompt variants.
    n: bool
    # The request field that caps output tokens, or None when there is no such cap.
    token_cap_field: str | None
    # Requests the endpoint handles at once without queueing them (a probe measures it); None: no limit known.
    max_concurrency: int | None = None


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
    # [{"token": str, "logprob": float, "top": [(token, logprob), ...]}] or None when the endpoint gave none (or gave
    # something that is not log-probabilities).
    logprobs: list[dict] | None = None
    # Set when the content cannot be used (for example it was not a string; ``content`` then shows what it was).
    problem: MalformedOutput | None = None


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
    # Set when the whole answer cannot be trusted (absurd usage); its tokens are then not counted.
    problem: MalformedOutput | None = None


class ProviderError(Exception):
    """A call that failed for good, after the retries it was allowed. ``kind`` is a short code for counters;
    ``detail`` what the job's outcome sentence needs (HTTP status, the server's message, a refused parameter)."""

    def __init__(self, message: str, *, kind: str, retries: int = 0, transient: bool = False,
                 detail: dict | None = None):
        super().__init__(message)
        self.kind = kind
        self.retries = retries
        self.transient = transient
        self.detail = detail or {}


class ProviderConfigError(Exception):
    """The provider cannot be set up (for example no API key); the job fails with this message."""


class Provider(Protocol):
    name: str
    model: str
    capabilities: Capabilities
    max_concurrency: int
    # What the provider changed about its requests while running, one sentence each.
    adaptations: Sequence[str]

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


# OpenAI's own API, and what a compatible server is assumed to do until a probe of it says otherwise.
OPENAI_CAPABILITIES = Capabilities(is_llm=True, needs_seeds=False,
                                   response_formats=("json_schema", "json_object", "none"), logprobs=True, n=True,
                                   token_cap_field="max_completion_tokens")
CAP_FIELDS = ("max_completion_tokens", "max_tokens")

# A request validation error, however the server frames it: pydantic's and FastAPI's wording (llama-cpp-python
# answers one with HTTP 500), llama.cpp's "Illegal param" / "Unsupported param", OpenAI's "Unrecognized request
# argument" / "Unsupported parameter" / "Invalid value".
_VALIDATION = re.compile(
    r"validation error|Input should be|Field required|Extra inputs are not permitted|Illegal param|Unsupported param|"
    r"Unrecognized request argument|Unsupported parameter|Invalid (?:value|type|parameter)|not supported|"
    r"completion choice|is not allowed|must be", re.I)
# Which optional parameter a refusal names, in the order they are tried.
_PARAMETER_NAMES = (
    ("response_format", re.compile(r"response_format|json_schema|json_object", re.I)),
    ("n", re.compile(r"completion choice|['\"`]n['\"`]|\bn must\b", re.I)),
    ("logprobs", re.compile(r"logprobs", re.I)),
    ("max_completion_tokens", re.compile(r"max_completion_tokens", re.I)),
    ("max_tokens", re.compile(r"\bmax_tokens\b", re.I)),
    ("seed", re.compile(r"\bseed\b", re.I)),
)
FORMAT_NAMES = {"json_schema": "json_schema", "json_object_schema": "json_object with a schema",
                "json_object": "json_object", "none": "plain text"}


def format_mode(response_format: dict | None) -> str:
    """The RESPONSE_FORMATS name of a ``response_format`` request value."""
    if not response_format:
        return "none"
    if response_format.get("type") == "json_schema":
        return "json_schema"
    return "json_object_schema" if "schema" in response_format else "json_object"


def format_downgraded(response_format: dict | None, mode: str) -> dict | None:
    """``response_format`` rewritten as ``mode``, a step down the ladder (the schema carries over where it can)."""
    if mode == "none" or not response_format:
        return None
    schema = (response_format.get("json_schema") or {}).get("schema") or response_format.get("schema")
    if mode == "json_object_schema" and isinstance(schema, dict):
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


def _error_fields(exc: openai.APIStatusError) -> tuple[str, str]:
    """The server's error message and code, from an OpenAI-style body or whatever text it sent."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    message = body.get("message") if isinstance(body, dict) else None
    code = body.get("code") if isinstance(body, dict) else None
    # Servers send tracebacks and pydantic dumps across lines; one line reads better in a sentence.
    return " ".join(str(message or exc.message).split()), str(code or "")


def refused_parameter(status: int, message: str, sent: dict) -> str | None:
    """The optional parameter a refused request was refused for, or None. Only parameters that were sent count, and
    only a 4xx or a 5xx that reads as a validation error."""
    if not (400 <= status < 500 or _VALIDATION.search(message)) or status in (401, 403, 404, 408, 429):
        return None
    for name, pattern in _PARAMETER_NAMES:
        sent_it = name in sent or (name == "logprobs" and "top_logprobs" in sent)
        if sent_it and pattern.search(message):
            return name
    return None


class OpenAIProvider:
    name = OPENAI

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        key_variable: str = "OPENAI_API_KEY",
        timeout: float = 30.0,
        max_concurrency: int = 8,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        capabilities: Capabilities = OPENAI_CAPABILITIES,
        adapt: bool = True,
    ):
        api_key = os.environ.get(key_variable, "") if key_variable else ""
        if not api_key and not base_url:
            raise ProviderConfigError(
                f"{key_variable or 'OPENAI_API_KEY'} is not set in the worker's environment; set it, or point the "
                f"connection at a compatible server that needs no key."
            )
        # Self-hosted compatible servers usually ignore the key, but the client insists on one.
        self._client = openai.OpenAI(
            api_key=api_key or "no-key", base_url=base_url or None, timeout=timeout, max_retries=0
        )
        self.model = model
        self._capabilities = capabilities
        self.max_concurrency = max(1, min(max_concurrency, capabilities.max_concurrency or max_concurrency))
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        # What the server was found to refuse or ignore while this provider ran (one job), shared by its threads.
        # A server that refuses json_schema is not OpenAI: it may be llama-cpp-python, which takes a schema in
        # json_object; that is tried before json_object alone.
        self._formats = tuple(m for m in RESPONSE_FORMATS if m in capabilities.response_formats
                              or (m == "json_object_schema" and "json_schema" in capabilities.response_formats))
        self._dropped: set[str] = set()
        self._cap_field = capabilities.token_cap_field
        self._cap_fields_refused: set[str] = set()
        # Off for the capability probe, which must see each refusal as it is.
        self._adapt_enabled = adapt
        self.adaptations: list[str] = []

    def __repr__(self) -> str:
        # Deliberately without the client: its repr must never be the way a key reaches a log.
        return f"OpenAIProvider(model={self.model!r})"

    @property
    def capabilities(self) -> Capabilities:
        """The declared (or probed) capabilities, less what the server refused or ignored since."""
        with self._lock:
            return dataclasses.replace(
                self._capabilities, response_formats=self._formats, n=self._capabilities.n and "n" not in self._dropped,
                logprobs=self._capabilities.logprobs and "logprobs" not in self._dropped,
                token_cap_field=self._cap_field)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        with self._lock:
            jitter = self._rng.random()
        if retry_after is not None:
            # The server said when; a little jitter keeps concurrent callers from all returning at the same instant.
            return min(retry_after, MAX_RETRY_AFTER_SECONDS) + 0.1 * jitter * max(retry_after, 0.1)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return ceiling / 2 + jitter * ceiling / 2

    def chat(self, call: ChatCall) -> ChatResult:
        retries = 0
        # At most one adaptation per optional parameter, so a server that refuses everything cannot loop us.
        adapted = 0
        while True:
            params = self._params(call)
            try:
                completion = self._client.chat.completions.create(**params)
                result = _read_completion(completion, retries + adapted)
                if self._adapt_enabled:
                    self._notice_ignored(call, params, result)
                return result
            except openai.APIStatusError as exc:
                status = exc.status_code
                message, code = _error_fields(exc)
                message = storable(message)[:300]
                refused = refused_parameter(status, message, params)
                if (refused and self._adapt_enabled and adapted < len(_PARAMETER_NAMES)
                        and self._adapt(refused, params, status, message)):
                    adapted += 1
                    continue
                detail = {"status": status, "message": message}
                if refused:
                    detail.update(param=refused, format=format_mode(params.get("response_format")))
                transient = (status == 429 or status >= 500) and not refused and not _VALIDATION.search(message)
                if code == "context_length_exceeded":
                    kind = "context_length"
                elif refused:
                    kind = "refused"
                else:
                    kind = "rate_limited" if status == 429 else f"http_{status}"
                error, retry_after = exc, retry_after_seconds(exc.response.headers)
                message = f"HTTP {status}: {message}"
            except openai.APITimeoutError as exc:
                transient, kind, error, retry_after, message = True, "timeout", exc, None, "request timed out"
                detail = {}
            except openai.APIConnectionError as exc:
                transient, kind, error, retry_after, message = True, "connection", exc, None, "connection failed"
                detail = {}
            except (json.JSONDecodeError, RecursionError, openai.APIResponseValidationError) as exc:
                # The client raises a bare JSONDecodeError on a cut-off body, and the JSON parser's RecursionError on
                # a body nested too deeply to read: both are garbage worth another try.
                transient, kind, error, retry_after = True, "bad_body", exc, None
                message = storable(f"unreadable response body: {type(exc).__name__}: {exc}")[:300]
                detail = {}
            if not transient or retries >= self.max_retries:
                raise ProviderError(message, kind=kind, retries=retries + adapted, transient=transient,
                                    detail=detail) from error
            self._sleep(self._backoff(retries, retry_after))
            retries += 1

    def _params(self, call: ChatCall) -> dict:
        with self._lock:
            formats, dropped, cap_field = self._formats, set(self._dropped), self._cap_field
        params: dict[str, Any] = {"model": self.model, "messages": call.messages}
        if call.n != 1 and "n" not in dropped:
            params["n"] = call.n
        if call.response_format:
            mode = format_mode(call.response_format)
            if mode not in formats:
                # Asked for a format the server refused earlier in this job: the best one it still takes.
                mode = next((m for m in RESPONSE_FORMATS[RESPONSE_FORMATS.index(mode):] if m in formats), "none")
            fmt = call.response_format if mode == format_mode(call.response_format) else format_downgraded(
                call.response_format, mode)
            if fmt:
                params["response_format"] = fmt
        if call.temperature is not None:
            params["temperature"] = call.temperature
        if call.logprobs and "logprobs" not in dropped:
            params["logprobs"] = True
            if call.top_logprobs:
                params["top_logprobs"] = call.top_logprobs
        if call.max_tokens and cap_field:
            params[cap_field] = call.max_tokens
        if call.seed is not None and "seed" not in dropped:
            params["seed"] = call.seed
        return params

    def _adapt(self, refused: str, sent: dict, status: int, message: str) -> bool:
        """Stop sending what the server refused, for the rest of this job; True if a resend can differ."""
        because = f"(HTTP {status}: {message[:160]})"
        with self._lock:
            if refused == "response_format":
                mode = format_mode(sent.get("response_format"))
                if mode not in self._formats:
                    return True  # another thread already stepped down past it
                lower = [m for m in RESPONSE_FORMATS[RESPONSE_FORMATS.index(mode) + 1:] if m in self._formats]
                if not lower:
                    return False
                self._formats = tuple(m for m in self._formats if m != mode)
                self.adaptations.append(f"The server refused the {FORMAT_NAMES[mode]} response format {because}; "
                                        f"the job asked for {FORMAT_NAMES[lower[0]]} from then on.")
                return True
            if refused in CAP_FIELDS:
                if self._cap_field != refused:
                    return True
                self._cap_fields_refused.add(refused)
                other = next((f for f in CAP_FIELDS if f not in self._cap_fields_refused), None)
                self._cap_field = other
                self.adaptations.append(f"The server refused {refused} {because}; the job "
                                        + (f"sent {other} from then on." if other else "sent no output cap."))
                return True
            if refused in self._dropped:
                return True
            self._dropped.add(refused)
            self.adaptations.append(f"The server refused {refused} {because}; the job stopped sending it"
                                    + (" and asked for each answer separately." if refused == "n" else "."))
            return True

    def _notice_ignored(self, call: ChatCall, params: dict, result: ChatResult) -> None:
        """Remember what the server silently ignored: ``n`` (fewer choices), the cap field (far more tokens)."""
        with self._lock:
            if "n" in params and len(result.choices) < params["n"] and "n" not in self._dropped:
                self._dropped.add("n")
                self.adaptations.append(f"The server ignored n={params['n']} and sent {len(result.choices)} "
                                        f"answer(s); the job asked for each answer separately from then on.")
            field = self._cap_field
            if (field and field in params and result.problem is None
                    and result.completion_tokens > CAP_IGNORED_FACTOR * params[field] * max(1, len(result.choices))
                    + 16):
                self._cap_fields_refused.add(field)
                other = next((f for f in CAP_FIELDS if f not in self._cap_fields_refused), None)
                self._cap_field = other
                self.adaptations.append(
                    f"The server ignored {field} ({result.completion_tokens} tokens for a cap of {params[field]}); "
                    + (f"the job sent {other} from then on." if other else "the job sent no output cap."))
            if call.logprobs and "logprobs" in params and result.choices and not any(
                    c.logprobs for c in result.choices) and "logprobs" not in self._dropped:
                self._dropped.add("logprobs")
                self.adaptations.append("The server returned no logprobs; the job estimated confidence by "
                                        "self-consistency from then on.")


def _short(value: Any) -> str:
    return storable(value)[:MAX_ID_CHARS] if isinstance(value, str) else ""


def _token_count(usage: Any, name: str) -> tuple[int, MalformedOutput | None]:
    value = getattr(usage, name, None)
    if value is None:
        return 0, None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS_PER_REQUEST:
        return 0, MalformedOutput("bad_usage", f"usage.{name} {str(value)[:30]} is not a token count between 0 and "
                                                f"{MAX_TOKENS_PER_REQUEST:,}")
    return value, None


def _logprob(value: Any) -> float | None:
    """A log-probability, or None for anything else (positive, infinite, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -math.inf < value <= 0:
        return None
    return float(value)


def _read_logprobs(logprobs: Any) -> list[dict] | None:
    """The choice's token logprobs, or None unless every entry is a string token with a real log-probability."""
    content = getattr(logprobs, "content", None)
    if not isinstance(content, list) or not content:
        return None
    tokens = []
    for entry in content:
        token, logprob = getattr(entry, "token", None), _logprob(getattr(entry, "logprob", None))
        alternatives = getattr(entry, "top_logprobs", None) or []
        if not isinstance(token, str) or logprob is None or not isinstance(alternatives, list):
            return None
        top = [(getattr(alt, "token", None), _logprob(getattr(alt, "logprob", None))) for alt in alternatives]
        if any(not isinstance(t, str) or lp is None for t, lp in top):
            return None
        tokens.append({"token": token, "logprob": logprob, "top": top})
    return tokens


def _read_choice(choice: Any) -> ChatChoice:
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    finish_reason = _short(getattr(choice, "finish_reason", None))
    logprobs = _read_logprobs(getattr(choice, "logprobs", None))
    if content is None or isinstance(content, str):
        return ChatChoice(content=content or "", finish_reason=finish_reason, logprobs=logprobs)
    return ChatChoice(content=bounded_repr(content), finish_reason=finish_reason, problem=MalformedOutput(
        "not_text", f"the content is a JSON {type(content).__name__}, not a string"))


def _read_completion(completion: Any, retries: int) -> ChatResult:
    """The parts of a completion the app uses, each checked: the client builds its objects without validating them."""
    raw_choices = getattr(completion, "choices", None)
    choices = [_read_choice(c) for c in raw_choices] if isinstance(raw_choices, list) else []
    usage = getattr(completion, "usage", None)
    prompt_tokens, prompt_problem = _token_count(usage, "prompt_tokens")
    completion_tokens, completion_problem = _token_count(usage, "completion_tokens")
    problem = prompt_problem or completion_problem
    return ChatResult(
        choices=choices,
        prompt_tokens=0 if problem else prompt_tokens,
        completion_tokens=0 if problem else completion_tokens,
        response_id=_short(getattr(completion, "id", None)),
        model=_short(getattr(completion, "model", None)),
        retries=retries,
        problem=problem,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Offline: rule-based, honestly not an LLM

_WORD = re.compile(r"\S+")


def eda_augment(text: str, rng: random.Random, *, alpha: float = 0.15, donor_words: Sequence[str] = ()) -> str:
    """One EDA-style variant of ``text``: random swaps, deletions and insertions of about ``alpha`` of its words.

    Synonym replacement (the fourth EDA operation) needs a thesaurus we do not ship; insertions draw from the text
    itself and from ``donor_words`` (other seeds of the same label) instead.
    """
    original = _WORD.findall(text)
    if len(original) < 2:
        return text
    changes = max(1, round(alpha * len(original)))
    pool = list(original) + list(donor_words)
    variant = " ".join(original)
    # Edits can cancel out (a swap undone by the next, a swap of two equal words); a copy of the seed is no sample,
    # so a few more draws are made before giving the copy up to the duplicate filter.
    for _ in range(8):
        words = list(original)
        for _ in range(changes):
            operation = rng.choice(("swap", "delete", "insert"))
            if operation == "swap":
                i, j = rng.sample(range(len(words)), 2)
                words[i], words[j] = words[j], words[i]
            elif operation == "delete" and len(words) > 3:
                del words[rng.randrange(len(words))]
            else:
                words.insert(rng.randrange(len(words) + 1), rng.choice(pool).strip(".,;:!?\"'"))
        variant = " ".join(words)
        if variant != " ".join(original):
            break
    return variant


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
    # It answers in the shape asked for whatever the format, and labels by counting label words (its own votes).
    capabilities = Capabilities(is_llm=False, needs_seeds=True, response_formats=RESPONSE_FORMATS, logprobs=False,
                                n=False, token_cap_field=None)
    max_concurrency = 1
    adaptations: tuple[str, ...] = ()

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


# ---------------------------------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    display_name: str
    capabilities: Capabilities
    # build(endpoint=, model=, max_concurrency=, capabilities=) -> a provider sending to ``endpoint`` (LLM providers;
    # others ignore it), with the endpoint's probed capabilities when there are any. Timeouts and retries are the
    # operator's settings.
    build: Callable[..., Provider]

    def job_model(self, requested: str, endpoint: Endpoint) -> str:
        """The model a job records: the lead's choice, else the endpoint's; none for a provider without models."""
        return (requested or endpoint.model) if self.capabilities.is_llm else ""


PROVIDERS: dict[str, ProviderSpec] = {}


def register(spec: ProviderSpec) -> None:
    if spec.name in PROVIDERS:
        raise ValueError(f"Provider '{spec.name}' is registered twice.")
    PROVIDERS[spec.name] = spec


def provider_spec(name: str) -> ProviderSpec:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ProviderConfigError(f"Unknown provider '{name}'; known: {', '.join(PROVIDERS)}.") from None


def provider_choices() -> list[tuple[str, str]]:
    return [(spec.name, spec.display_name) for spec in PROVIDERS.values()]


def provider_display_name(name: str) -> str:
    spec = PROVIDERS.get(name)
    return spec.display_name if spec else name


def provider_for(*, name: str, endpoint: Endpoint | None = None, model: str = "", max_concurrency: int | None = None,
                 capabilities: Capabilities | None = None) -> Provider:
    """The provider a job asked for, sending to ``endpoint`` (the deployment's default when None)."""
    return provider_spec(name).build(endpoint=endpoint or default_endpoint(), model=model,
                                     max_concurrency=max_concurrency, capabilities=capabilities)


def _openai(*, endpoint: Endpoint, model: str, max_concurrency: int | None,
            capabilities: Capabilities | None) -> OpenAIProvider:
    return OpenAIProvider(
        model=model or endpoint.model,
        base_url=endpoint.base_url or None,
        key_variable=endpoint.key_variable,
        timeout=settings.OPENAI_TIMEOUT,
        max_concurrency=max_concurrency or settings.OPENAI_MAX_CONCURRENCY,
        max_retries=settings.OPENAI_MAX_RETRIES,
        capabilities=capabilities or OPENAI_CAPABILITIES,
    )


register(ProviderSpec(name=OFFLINE, display_name="offline augmentation (no LLM)",
                      capabilities=OfflineProvider.capabilities, build=lambda **_: OfflineProvider()))
register(ProviderSpec(name=OPENAI, display_name="OpenAI-compatible LLM", capabilities=OPENAI_CAPABILITIES,
                      build=_openai))
