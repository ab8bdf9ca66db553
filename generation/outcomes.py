"""What a job's counters mean to a lead, in one sentence, and whether the job failed.

A job that stored nothing because every request failed has failed, whatever its batches did; one that stored part of
what was asked says how much and the dominant reason for the rest. The reasons are the failure codes the engine counts
(``failed_by_reason``), read with one example of each (HTTP status, the server's own message, the refused parameter)
so that the sentence says what really happened: "The server refused the json_schema response format (HTTP 500: ...):
10 of 10 samples failed."
"""
from __future__ import annotations

from collections.abc import Mapping

from generation.parsing import storable
from generation.providers import FORMAT_NAMES

# Not errors: the model declined to label, answered outside the labels, or a person decided the item first.
NOT_ERRORS = frozenset({"abstained", "unmatched_label", "no_longer_pending"})
MESSAGE_CHARS = 160


def _said(example: Mapping) -> str:
    """The server's own words, bounded (they are untrusted text; templates escape them)."""
    message = storable(str(example.get("message") or ""))
    return message[:MESSAGE_CHARS] + ("..." if len(message) > MESSAGE_CHARS else "")


def reason_sentence(kind: str, example: Mapping | None = None) -> str:
    """Why samples of this failure kind were not obtained, as a sentence without its final full stop."""
    example = example or {}
    status = example.get("status")
    said = _said(example)
    http = f"HTTP {status}: {said}" if status else said
    if kind == "refused":
        if example.get("param") == "response_format":
            fmt = FORMAT_NAMES.get(str(example.get("format")), str(example.get("format")))
            return f"The server refused the {fmt} response format ({http})"
        return f"The server refused the request parameter {example.get('param')} ({http})"
    if kind == "context_length":
        return f"The prompt does not fit the model's context window ({http})"
    if kind in ("http_401", "http_403"):
        return f"The server refused the API key ({http})"
    if kind == "http_404":
        return f"The server does not know this model or URL ({http})"
    if kind == "rate_limited":
        return "The server kept rate-limiting the requests (HTTP 429), retries included"
    if kind.startswith("http_5"):
        return f"The server failed ({http}), retries included"
    if kind.startswith("http_"):
        return f"The server refused the requests ({http})"
    if kind == "timeout":
        return "The requests timed out, retries included"
    if kind == "connection":
        return "The server could not be reached, retries included"
    if kind == "bad_body":
        return "The server's responses could not be read, retries included"
    if kind == "malformed":
        detail = f" ({said})" if said else ""
        return f"The model's answers were not the JSON asked for{detail}"
    if kind in ("invalid_sample", "missing"):
        return "The model returned fewer usable samples than it was asked for"
    if kind == "no_seeds":
        return "There are no accepted seed examples of the target label to augment"
    if kind == "abstained":
        return "The model abstained"
    if kind == "unmatched_label":
        return "The model answered with something that is none of the labels"
    if kind == "no_longer_pending":
        return "People decided the items before the model's labels arrived"
    return said or kind.replace("_", " ").capitalize()


def job_outcome(*, labelling: bool, requested: int, produced: int, filtered: int, failed_by_reason: Mapping[str, int],
                examples: Mapping[str, Mapping]) -> tuple[bool, str]:
    """(failed, sentence): failed when nothing was stored and something really failed (an abstaining model or items
    decided meanwhile are outcomes, not errors)."""
    noun = "items" if labelling else "samples"
    stored = produced + (0 if labelling else filtered)
    failed = sum(failed_by_reason.values())
    errors = {kind: n for kind, n in failed_by_reason.items() if kind not in NOT_ERRORS and n}
    pool = errors or {kind: n for kind, n in failed_by_reason.items() if n}
    if not pool:
        if labelling:
            return False, f"{produced} of {requested} items labelled."
        return False, f"{stored} of {requested} samples stored: {produced} for routing, {filtered} filtered."
    dominant = max(pool, key=lambda kind: (pool[kind], kind))
    reason = reason_sentence(dominant, examples.get(dominant))
    if stored == 0 and errors:
        return True, f"{reason}: {failed} of {requested} {noun} failed."
    done = f"{produced} of {requested} items labelled" if labelling else (
        f"{stored} of {requested} samples stored ({produced} for routing, {filtered} filtered)")
    others = f"; {len(pool) - 1} other reason{'s' if len(pool) > 2 else ''}" if len(pool) > 1 else ""
    return False, f"{done}; {failed} not: {reason} ({pool[dominant]}){others}."
