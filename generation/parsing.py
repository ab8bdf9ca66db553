"""Strict reading of model output. Nothing here trusts the model: every shape is checked, and a bad answer raises
``MalformedOutput`` with a short reason (the caller counts it, keeps the raw text and may retry); it never crashes a job.

Sizes and nesting are bounded before the JSON parser runs (it recurses once per level), and text that no database can
store (a NUL, a lone UTF-16 surrogate) is refused as a sample and escaped wherever the raw answer is kept.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

RAW_KEEP_CHARS = 4000
# Far above what a model writes in one answer (output caps are tens of thousands of tokens).
MAX_CONTENT_CHARS = 1_000_000
# The answers asked for nest 3 deep; the JSON parser would recurse until a RecursionError.
MAX_DEPTH = 32
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)
# A JSON string literal; each alternative matches a different first character, so a failed match cannot backtrack.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


class MalformedOutput(ValueError):
    """The model's answer is not what was asked for; ``reason`` is a short code for counters."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def storable(text: str) -> str:
    """``text`` as every database and JSON column can hold it: NUL and lone surrogates written as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def is_storable(text: str) -> bool:
    return storable(text) == text


def clip(raw: str, limit: int = RAW_KEEP_CHARS) -> str:
    """The raw output as kept for audit: storable, bounded, with a marker when cut."""
    raw = storable(raw)
    return raw if len(raw) <= limit else raw[:limit] + f"... [{len(raw) - limit} more characters]"


def bounded_repr(value: Any) -> str:
    """A non-text answer (already parsed JSON) shown as JSON text for audit, bounded."""
    try:
        return clip(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        return f"<a {type(value).__name__} that cannot be shown>"


def nesting_depth(text: str, limit: int) -> int:
    """How deep brackets nest in ``text`` outside string literals, counting no further than ``limit`` + 1."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


def extract_json(content: str) -> Any:
    """The JSON value in ``content``; tolerates a Markdown code fence (models without json mode add one)."""
    if not content or not content.strip():
        raise MalformedOutput("empty", "the model returned no content")
    if len(content) > MAX_CONTENT_CHARS:
        raise MalformedOutput("too_long", f"{len(content):,} characters; at most {MAX_CONTENT_CHARS:,} are read")
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content.strip()
    if nesting_depth(text, MAX_DEPTH) > MAX_DEPTH:
        raise MalformedOutput("too_deep", f"brackets nest more than {MAX_DEPTH} deep")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedOutput("invalid_json", str(exc)[:120]) from None


@dataclass
class ParsedSamples:
    samples: list[tuple[str, str]]
    invalid: int  # entries present but unusable (not an object, empty text, wrong label...)


def parse_samples(content: str, *, allowed_labels: list[str], expected: int) -> ParsedSamples:
    """``{"samples": [{"text": str, "label": one of allowed}]}``; at most ``expected`` entries are taken. A text with a
    NUL or a lone surrogate is refused (no database stores it), not repaired: it is not the text the model meant."""
    data = extract_json(content)
    if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
        raise MalformedOutput("wrong_schema", 'expected an object with a "samples" array')
    samples, invalid, unstorable = [], 0, 0
    for entry in data["samples"][:expected]:
        text = entry.get("text") if isinstance(entry, dict) else None
        label = entry.get("label") if isinstance(entry, dict) else None
        if isinstance(text, str) and not is_storable(text):
            invalid += 1
            unstorable += 1
        elif isinstance(text, str) and text.strip() and isinstance(label, str) and label in allowed_labels:
            samples.append((text.strip(), label))
        else:
            invalid += 1
    if not samples and unstorable:
        raise MalformedOutput("bad_text", "sample texts contain a NUL character or a lone surrogate")
    if not samples and invalid:
        raise MalformedOutput("wrong_schema", "no sample has a text and an allowed label")
    return ParsedSamples(samples=samples, invalid=invalid)


@dataclass
class Verdict:
    labels: list[str]  # empty: the model abstained, or answered with something that is not a label
    rationale: str = ""
    # The model's answer when it matched no label (kept short, for the job log): an abstention, not an error.
    unmatched: str = ""


# A verbalised answer outside JSON is one or a few words ("spam", "Positive."); anything longer is not an answer.
_VERBAL_MAX_CHARS = 40


def _label_for(answer: object, labels: list[str], words: dict[str, tuple[str, ...]]) -> str | None:
    """The label a verbalised answer names: the label itself, its name in another case, or one of its label words
    (the verbalizer) when only one label has that word."""
    if not isinstance(answer, str):
        return None
    if answer in labels:
        return answer
    said = answer.strip().strip("\"'`.!").casefold()
    by_name = [label for label in labels if label.casefold() == said]
    if len(by_name) == 1:
        return by_name[0]
    by_word = [label for label in labels if said in {w.casefold().strip() for w in words.get(label, ())}]
    return by_word[0] if len(by_word) == 1 else None


def parse_verdict(content: str, *, labels: list[str], multi_label: bool,
                  words: dict[str, tuple[str, ...]] | None = None) -> Verdict:
    """``{"label": one of labels | null}`` (or ``{"labels": [...]}`` for multi-label), plus an optional rationale.

    The label is read as a verbaliser reads it (``_label_for``); an answer that names no label is an abstention with
    the answer kept in ``unmatched``, not a malformed output: asking again would not make it a label. A bare word or
    two instead of JSON is read the same way.
    """
    words = words or {}
    try:
        data = extract_json(content)
    except MalformedOutput as exc:
        said = content.strip()
        if exc.reason != "invalid_json" or len(said) > _VERBAL_MAX_CHARS or "{" in said:
            raise
        data = {"labels": [said]} if multi_label else {"label": said}
    if not isinstance(data, dict):
        raise MalformedOutput("wrong_schema", "expected a JSON object")
    rationale = data.get("rationale")
    rationale = storable(rationale.strip())[:500] if isinstance(rationale, str) else ""
    if multi_label and "labels" in data:
        said = data["labels"] if isinstance(data["labels"], list) else [data["labels"]]
        chosen = [_label_for(x, labels, words) for x in said]
        unmatched = [x for x, label in zip(said, chosen) if label is None]
        return Verdict(labels=list(dict.fromkeys(label for label in chosen if label)), rationale=rationale,
                       unmatched=bounded_repr(unmatched)[:80] if unmatched else "")
    if "label" not in data:
        raise MalformedOutput("wrong_schema", 'no "label" field')
    label = data["label"]
    if label is None:
        return Verdict(labels=[], rationale=rationale)
    chosen = _label_for(label, labels, words)
    if chosen is None:
        return Verdict(labels=[], rationale=rationale, unmatched=bounded_repr(label)[:80])
    return Verdict(labels=[chosen], rationale=rationale)


_LABEL_VALUE = re.compile(r'"labels?"\s*:\s*\[?\s*"')


def _label_offset(text: str, chosen: str) -> int | None:
    """Where the chosen label's value starts in the answer: after ``"label": "``, else as a quoted string, else as a
    word (a verbalised answer)."""
    for match in _LABEL_VALUE.finditer(text):
        if text.startswith(chosen, match.end()):
            return match.end()
    quoted = text.find(f'"{chosen}"')
    if quoted >= 0:
        return quoted + 1
    word = re.search(r"(?<!\w)" + re.escape(chosen) + r"(?!\w)", text)
    return word.start() if word else None


def _completes(emitted: str, label: str) -> bool:
    """Whether the text emitted at the label's position spells ``label`` whole (a closing quote may follow)."""
    return emitted.startswith(label) and not emitted[len(label):][:1].isalnum()


def label_probs_from_logprobs(tokens: list[dict] | None, labels: list[str], chosen: str) -> dict[str, float] | None:
    """Probability per label at the position where the model wrote ``chosen``, renormalised over the labels.

    The position is found by character offset in the answer the tokens spell (in JSON the label is not the first
    token). A label may take several tokens and share its first ones with another label ("sp" of spam and sports):
    walking the chosen label's tokens, each alternative that continues the text toward another label gives that label
    the probability of the path so far times its own. An alternative that leads to no label is a token the format
    forbids (servers return logprobs from the unconstrained distribution, before the grammar masks them) and is
    ignored; so is an alternative that does not start with what the chosen token has before the label (its opening
    quote). A label missing from the alternatives gets the smallest listed probability (an upper bound). None when the
    position is not found, when a token of the chosen label is less likely than every alternative listed beside it
    (the grammar forced a token the model did not want), or when no label has any probability.
    """
    if not tokens:
        return None
    text = "".join(entry["token"] for entry in tokens)
    start = _label_offset(text, chosen)
    if start is None:
        return None
    offset, first = 0, 0
    for first, entry in enumerate(tokens):
        if offset + len(entry["token"]) > start:
            break
        offset += len(entry["token"])
    else:
        return None
    lead = tokens[first]["token"][:start - offset]
    mass: dict[str, float] = {}
    emitted, path = "", 1.0
    for position in range(first, len(tokens)):
        entry = tokens[position]
        skip = lead if position == first else ""
        others = [logprob for token, logprob in entry.get("top", []) if token != entry["token"]]
        if others and entry["logprob"] < min(others):
            # The grammar forced a token the model ranked below every alternative listed (seen with SmolLM2 behind
            # llama-cpp-python writing "spam" as s + pa + m; that server lists the forced token after the top k):
            # the path is an artefact and says nothing.
            return None
        seen = {entry["token"]}
        for token, logprob in entry.get("top", []):
            if token in seen or not token.startswith(skip):
                continue
            seen.add(token)
            if len(token) == len(skip):
                continue  # the opening quote alone: a path to every label alike, which says nothing between them
            candidate = emitted + token[len(skip):]
            reached = [label for label in labels if label.startswith(candidate) or _completes(candidate, label)]
            for label in reached:
                mass[label] = mass.get(label, 0.0) + path * math.exp(logprob) / len(reached)
        emitted += entry["token"][len(skip):]
        path *= math.exp(entry["logprob"])
        if _completes(emitted, chosen):
            mass[chosen] = mass.get(chosen, 0.0) + path
            break
        if not chosen.startswith(emitted):
            return None
    else:
        return None
    # A label no alternative leads to is less likely than every alternative listed, not impossible: it gets the
    # smallest listed probability as its upper bound, so that a short list never makes the chosen label certain.
    listed = [math.exp(logprob) for token, logprob in tokens[first].get("top", []) if token != tokens[first]["token"]]
    if listed:
        for label in labels:
            mass.setdefault(label, min(listed))
    total = sum(mass.values())
    if total <= 0:
        return None
    return {label: round(p / total, 6) for label, p in mass.items()}
