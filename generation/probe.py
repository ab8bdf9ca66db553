"""The capability probe: a dozen tiny requests that find out what an OpenAI-compatible endpoint really does.

Servers that call themselves compatible differ where it matters to a job (issue 20): llama-cpp-python answers a
``json_schema`` response format with a 500 and takes a schema inside ``json_object`` instead; it ignores ``n`` and
``max_completion_tokens``; llama.cpp's server refuses ``n``; a single local model handles one request at a time. The
probe records, for each thing a job relies on, whether the server honours it, ignores it or refuses it, with the
evidence in a few words:

- the response formats (json_schema, json_object with a schema, json_object; plain text always works): a format is
  honoured when the answer follows a schema the prompt does not describe, so obeying the prompt alone does not count;
- logprobs with top alternatives; ``n``; ``max_tokens`` and ``max_completion_tokens``; ``seed``;
- how many requests it takes at once: three sent together, against one alone (the quicker of two).

No database here: ``generation.connections`` stores the profile, jobs read it back through ``capabilities_from``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from generation.outcomes import reason_sentence
from generation.parsing import MalformedOutput, extract_json
from generation.providers import (
    CAP_FIELDS,
    CAP_IGNORED_FACTOR,
    RESPONSE_FORMATS,
    Capabilities,
    ChatCall,
    ChatResult,
    Provider,
    ProviderError,
)

PROFILE_VERSION = 1
HONOURED, IGNORED, REFUSED, FAILED = "honoured", "ignored", "refused", "failed"
# Values no model would pick unprompted: an answer holding one of them followed the schema, not the prompt.
SCHEMA_VALUES = ["kestrel", "marmot"]
PROBE_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": SCHEMA_VALUES}},
                "required": ["answer"], "additionalProperties": False}
PROBE_LABELS = ["positive", "negative"]
CAP = 5
CONCURRENT = 3
# Three requests sent together that take this many times one request alone were handled one after the other.
SERIAL_RATIO = 2.0
# A request answered quicker than this is too quick for queueing to cost a job anything, and for timing to tell.
MEASURABLE_SECONDS = 0.1
# Long enough that generating dominates the timing of the concurrency test, short enough to stay cheap.
TIMED_TOKENS = 24
FULL = Capabilities(is_llm=True, needs_seeds=False, response_formats=RESPONSE_FORMATS, logprobs=True, n=True,
                    token_cap_field=None)

MakeProvider = Callable[[Capabilities], Provider]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _label_messages() -> list[dict]:
    return _user("Classify the text into exactly one of the labels.\nLabels: positive, negative\n"
                 'Reply with {"label": "<one of the labels>"}.\nText: I love this, it is wonderful.')


def _label_format(mode: str) -> dict | None:
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": PROBE_LABELS}},
              "required": ["label"], "additionalProperties": False}
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "Verdict", "strict": True, "schema": schema}}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"} if mode == "json_object" else None


def _finding(result: str, detail: str) -> dict:
    return {"result": result, "detail": detail[:200]}


def _error_finding(exc: ProviderError) -> dict:
    refused = exc.kind == "refused" or (exc.kind.startswith("http_4") and exc.kind not in ("http_401", "http_403",
                                                                                          "http_404"))
    return _finding(REFUSED if refused else FAILED, reason_sentence(exc.kind, {**exc.detail, "message":
                                                                               exc.detail.get("message", str(exc))}))


class _Probe:
    def __init__(self, make: MakeProvider):
        self.make = make
        self.requests = 0

    def send(self, call: ChatCall, capabilities: Capabilities = FULL) -> ChatResult:
        self.requests += 1
        return self.make(capabilities).chat(call)

    def reach(self) -> None:
        self.send(ChatCall(messages=_user("Reply with the single word: ready"), temperature=0))

    def cap(self, field: str) -> dict:
        try:
            result = self.send(ChatCall(messages=_user("Count from 1 to 200, separated by spaces."), temperature=0,
                                        max_tokens=CAP), replace(FULL, token_cap_field=field))
        except ProviderError as exc:
            return _error_finding(exc)
        content = result.choices[0].content if result.choices else ""
        tokens = result.completion_tokens or len(content.split())
        if tokens <= CAP_IGNORED_FACTOR * CAP + 1:
            return _finding(HONOURED, f"{tokens} tokens for a cap of {CAP}")
        return _finding(IGNORED, f"{tokens} tokens for a cap of {CAP}")

    def format(self, mode: str, cap_field: str | None) -> dict:
        if mode == "json_object":
            fmt, prompt = {"type": "json_object"}, "Say hello in a few words."
        else:
            fmt = {"type": "json_schema", "json_schema": {"name": "Probe", "strict": True, "schema": PROBE_SCHEMA}} \
                if mode == "json_schema" else {"type": "json_object", "schema": PROBE_SCHEMA}
            prompt = "Say hello in a few words, as JSON."
        try:
            result = self.send(ChatCall(messages=_user(prompt), response_format=fmt, temperature=0, max_tokens=60),
                               replace(FULL, token_cap_field=cap_field))
        except ProviderError as exc:
            return _error_finding(exc)
        content = result.choices[0].content if result.choices else ""
        try:
            data = extract_json(content)
        except MalformedOutput:
            return _finding(IGNORED, f"the answer was not JSON: {content[:60]!r}")
        if mode == "json_object":
            ok = isinstance(data, dict)
        else:
            ok = isinstance(data, dict) and data.get("answer") in SCHEMA_VALUES
        if ok:
            return _finding(HONOURED, f"answered {json.dumps(data)[:60]}")
        return _finding(IGNORED, f"the answer did not follow it: {content[:60]!r}")

    def logprobs(self, mode: str, cap_field: str | None) -> dict:
        call = ChatCall(messages=_label_messages(), response_format=_label_format(mode), temperature=0,
                        logprobs=True, top_logprobs=5, max_tokens=40)
        try:
            result = self.send(call, replace(FULL, token_cap_field=cap_field))
        except ProviderError as exc:
            return _error_finding(exc)
        entries = result.choices[0].logprobs if result.choices else None
        if not entries:
            return _finding(IGNORED, "no logprobs came back")
        if not any(len(entry["top"]) >= 2 for entry in entries):
            return _finding(IGNORED, "logprobs came back without top alternatives")
        return _finding(HONOURED, f"{len(entries)} tokens with up to {max(len(e['top']) for e in entries)} "
                                  f"alternatives each")

    def n(self, mode: str, cap_field: str | None) -> dict:
        call = ChatCall(messages=_label_messages(), response_format=_label_format(mode), temperature=1.0, n=3,
                        max_tokens=40)
        try:
            result = self.send(call, replace(FULL, token_cap_field=cap_field))
        except ProviderError as exc:
            return _error_finding(exc)
        got = len(result.choices)
        if got >= 3:
            return _finding(HONOURED, "3 answers for n=3")
        return _finding(IGNORED, f"{got} answer{'s' if got != 1 else ''} for n=3")

    def seed(self, cap_field: str | None) -> dict:
        answers = []
        for _ in range(2):
            call = ChatCall(messages=_user("Write one random English word."), temperature=1.0, seed=4242,
                            max_tokens=8)
            try:
                result = self.send(call, replace(FULL, token_cap_field=cap_field))
            except ProviderError as exc:
                return _error_finding(exc)
            answers.append(result.choices[0].content if result.choices else "")
        if answers[0] == answers[1]:
            return _finding(HONOURED, "the same seed gave the same answer at temperature 1")
        return _finding(IGNORED, "the same seed gave different answers at temperature 1")

    def concurrency(self, cap_field: str | None) -> dict:
        capabilities = replace(FULL, token_cap_field=cap_field)
        call = ChatCall(messages=_user("Count from 1 to 100, separated by spaces."), temperature=0,
                        max_tokens=TIMED_TOKENS)

        def timed(_) -> float | ProviderError:
            began = time.perf_counter()
            try:
                self.make(capabilities).chat(call)
            except ProviderError as exc:
                return exc
            return time.perf_counter() - began

        # The quicker of two: a server's first request after others can pay for warming up or a cold prompt cache.
        first, second = timed(None), timed(None)
        self.requests += 2
        alone = next((t for t in (first, second) if isinstance(t, ProviderError)), None) or min(first, second)
        if not isinstance(alone, ProviderError) and alone < MEASURABLE_SECONDS:
            return {**_finding(HONOURED, f"one request in {alone:.2f} s: too quick for a queue to matter"),
                    "limit": None}
        with ThreadPoolExecutor(max_workers=CONCURRENT, thread_name_prefix="probe") as pool:
            together = list(pool.map(timed, range(CONCURRENT)))
        self.requests += CONCURRENT
        failures = [t for t in together if isinstance(t, ProviderError)]
        if isinstance(alone, ProviderError) or failures:
            exc = alone if isinstance(alone, ProviderError) else failures[0]
            return {**_finding(REFUSED, f"{CONCURRENT} requests at once: "
                                        + reason_sentence(exc.kind, {**exc.detail, "message": str(exc)})), "limit": 1}
        slowest = max(together)
        detail = f"one alone {alone:.2f} s, {CONCURRENT} together up to {slowest:.2f} s"
        if slowest >= SERIAL_RATIO * alone:
            return {**_finding(IGNORED, detail + ": handled one at a time"), "limit": 1}
        return {**_finding(HONOURED, detail + ": handled together"), "limit": None}


def probe_endpoint(make: MakeProvider) -> dict:
    """The endpoint's capability profile (see the module docstring). ``make(capabilities)`` builds a provider that
    sends exactly what it is asked to, without adapting to refusals and with at most one retry."""
    began = time.perf_counter()
    probe = _Probe(make)
    profile: dict = {"version": PROFILE_VERSION}
    try:
        probe.reach()
    except ProviderError as exc:
        profile.update(reachable=False, error=reason_sentence(exc.kind, {**exc.detail, "message": exc.detail.get(
            "message", str(exc))}) + ".", requests=probe.requests, seconds=round(time.perf_counter() - began, 2))
        return profile
    caps = {field: probe.cap(field) for field in reversed(CAP_FIELDS)}
    cap_field = next((field for field in CAP_FIELDS if caps[field]["result"] == HONOURED), None)
    formats = {mode: probe.format(mode, cap_field) for mode in RESPONSE_FORMATS if mode != "none"}
    formats["none"] = _finding(HONOURED, "plain text always works")
    best = next(mode for mode in RESPONSE_FORMATS if formats[mode]["result"] == HONOURED)
    profile.update(
        reachable=True, token_cap=caps, token_cap_field=cap_field, formats=formats, best_format=best,
        logprobs=probe.logprobs(best, cap_field), n=probe.n(best, cap_field), seed=probe.seed(cap_field),
        concurrency=probe.concurrency(cap_field),
    )
    profile.update(requests=probe.requests, seconds=round(time.perf_counter() - began, 2))
    return profile


def capabilities_from(profile: dict | None) -> Capabilities | None:
    """What a job may rely on, from a stored profile; None when there is no usable one (the declared capabilities
    apply, and the provider adapts at run time)."""
    if not profile or profile.get("version") != PROFILE_VERSION or not profile.get("reachable"):
        return None
    formats = profile["formats"]
    return Capabilities(
        is_llm=True, needs_seeds=False,
        response_formats=tuple(mode for mode in RESPONSE_FORMATS if formats.get(mode, {}).get("result") == HONOURED),
        logprobs=profile["logprobs"]["result"] == HONOURED, n=profile["n"]["result"] == HONOURED,
        token_cap_field=profile.get("token_cap_field"), max_concurrency=profile["concurrency"].get("limit"),
    )

