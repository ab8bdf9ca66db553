"""Strict reading of model output. Nothing here trusts the model: every shape is checked, and a bad answer raises
``MalformedOutput`` with a short reason (the caller counts it, keeps the raw text and may retry); it never crashes a job.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

RAW_KEEP_CHARS = 4000
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


class MalformedOutput(ValueError):
    """The model's answer is not what was asked for; ``reason`` is a short code for counters."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def clip(raw: str, limit: int = RAW_KEEP_CHARS) -> str:
    """The raw output as kept for audit: bounded, with a marker when cut."""
    return raw if len(raw) <= limit else raw[:limit] + f"... [{len(raw) - limit} more characters]"


def extract_json(content: str) -> Any:
    """The JSON value in ``content``; tolerates a Markdown code fence (models without json mode add one)."""
    if not content or not content.strip():
        raise MalformedOutput("empty", "the model returned no content")
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content.strip()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedOutput("invalid_json", str(exc)[:120]) from None


@dataclass
class ParsedSamples:
    samples: list[tuple[str, str]]
    invalid: int  # entries present but unusable (not an object, empty text, wrong label...)


def parse_samples(content: str, *, allowed_labels: list[str], expected: int) -> ParsedSamples:
    """``{"samples": [{"text": str, "label": one of allowed}]}``; at most ``expected`` entries are taken."""
    data = extract_json(content)
    if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
        raise MalformedOutput("wrong_schema", 'expected an object with a "samples" array')
    samples, invalid = [], 0
    for entry in data["samples"][:expected]:
        text = entry.get("text") if isinstance(entry, dict) else None
        label = entry.get("label") if isinstance(entry, dict) else None
        if isinstance(text, str) and text.strip() and isinstance(label, str) and label in allowed_labels:
            samples.append((text.strip(), label))
        else:
            invalid += 1
    if not samples and invalid:
        raise MalformedOutput("wrong_schema", "no sample has a text and an allowed label")
    return ParsedSamples(samples=samples, invalid=invalid)


@dataclass
class Verdict:
    labels: list[str]  # empty: the model abstained
    rationale: str = ""


def parse_verdict(content: str, *, labels: list[str], multi_label: bool) -> Verdict:
    """``{"label": one of labels | null}`` (or ``{"labels": [...]}`` for multi-label), plus an optional rationale."""
    data = extract_json(content)
    if not isinstance(data, dict):
        raise MalformedOutput("wrong_schema", "expected a JSON object")
    rationale = data.get("rationale")
    rationale = rationale.strip()[:500] if isinstance(rationale, str) else ""
    if multi_label and "labels" in data:
        chosen = data["labels"]
        if not isinstance(chosen, list) or not all(isinstance(x, str) and x in labels for x in chosen):
            raise MalformedOutput("unknown_label", "labels must be a list of allowed labels")
        return Verdict(labels=list(dict.fromkeys(chosen)), rationale=rationale)
    if "label" not in data:
        raise MalformedOutput("wrong_schema", 'no "label" field')
    label = data["label"]
    if label is None:
        return Verdict(labels=[], rationale=rationale)
    if not isinstance(label, str) or label not in labels:
        raise MalformedOutput("unknown_label", f"{str(label)[:40]!r} is not one of the labels")
    return Verdict(labels=[label], rationale=rationale)


def label_probs_from_logprobs(tokens: list[dict] | None, labels: list[str], chosen: str) -> dict[str, float] | None:
    """Probability per label at the position where the model wrote ``chosen``, from that token's top alternatives.

    In a JSON answer the label is not the first token (``{"label": "`` comes first), so the tokens are searched for
    the chosen label. Only alternatives that are labels count; None when the position is not found.
    """
    if not tokens:
        return None
    by_name = {label.casefold(): label for label in labels}
    for entry in tokens:
        if entry["token"].strip().strip('"').casefold() != chosen.casefold():
            continue
        logprobs: dict[str, float] = {}
        for token, logprob in [(entry["token"], entry["logprob"]), *entry.get("top", [])]:
            label = by_name.get(token.strip().strip('"').casefold())
            if label is not None and label not in logprobs:
                logprobs[label] = logprob
        probs = {label: math.exp(lp) for label, lp in logprobs.items()}
        # Mass on non-label tokens stays unassigned (a hedging model is less confident); rounding can push the sum
        # a hair over one, which is renormalised away.
        total = max(1.0, sum(probs.values()))
        return {label: round(p / total, 6) for label, p in probs.items()}
    return None
