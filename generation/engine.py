"""The network half of a batch: plan its requests, send them concurrently, read the answers. No database writes.

``services.job_run_batch`` gives this module a job's ``JobConfig`` and what earlier batches produced, and stores
what comes back. Planning is deterministic (the same batch planned twice asks for the same thing), which is what lets
a retried batch be idempotent. Dataset-wise steering lives here: each request goes to the label / attribute cell that
is furthest behind (counting the project's existing items when the lead asked to balance against them), and the
near-duplicates a cell produced last batch are shown to the next request for that cell as examples to avoid.
"""
from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from generation import prompts
from generation.config import JobConfig
from generation.parsing import (
    MalformedOutput,
    Verdict,
    clip,
    label_probs_from_logprobs,
    parse_samples,
    parse_verdict,
    storable,
)
from generation.providers import (
    RESPONSE_FORMATS,
    Capabilities,
    ChatCall,
    ChatChoice,
    ChatResult,
    Provider,
    ProviderError,
    run_concurrently,
)

# Self-consistency samples its extra answers warmer than the temperature-0 first answer, so that they can disagree.
CONSISTENCY_TEMPERATURE = 0.8
# Output caps, so that a model that loops stops at a bound instead of at the request timeout. A sample is at most
# ``filters.max_chars`` characters; English runs 3-4 characters per token, and JSON adds its keys and quotes.
CHARS_PER_TOKEN = 3
SAMPLE_OVERHEAD_TOKENS = 40
ANSWER_OVERHEAD_TOKENS = 50
LABEL_CAP_TOKENS = 64
CHECK_CAP_TOKENS = 320


def response_mode(config: JobConfig, capabilities: Capabilities) -> str:
    """The response format a job asks for: the lead's choice, or with ``auto`` the best the endpoint supports."""
    if config.response_format != "auto":
        return config.response_format
    return next((mode for mode in RESPONSE_FORMATS if mode in capabilities.response_formats), "none")


def generation_cap(config: JobConfig, count: int) -> int:
    per_sample = math.ceil(config.filters.max_chars / CHARS_PER_TOKEN) + SAMPLE_OVERHEAD_TOKENS
    return count * per_sample + ANSWER_OVERHEAD_TOKENS


def cell_key(label: str, attributes: dict[str, str]) -> str:
    return json.dumps([label, sorted(attributes.items())], separators=(",", ":"))


def cell_count(labels: Sequence[str], attributes: Mapping[str, Sequence[str]]) -> int:
    """The size of the label x attribute cross-product, without building it."""
    return len(labels) * math.prod(len(values) for values in attributes.values())


def all_cells(config: JobConfig) -> list[tuple[str, dict[str, str]]]:
    """Every (label, attributes) combination the job must cover evenly: the label x attribute cross-product (its size
    was checked with ``cell_count`` when the job was created)."""
    names = list(config.attributes)
    combos = itertools.product(*(config.attributes[n] for n in names)) if names else [()]
    return [(label, dict(zip(names, combo))) for combo in combos for label in config.labels]


def batch_size(config: JobConfig, *, labelling: bool) -> int:
    """Samples (or pool items) per batch."""
    if labelling:
        return config.requests_per_batch
    return config.samples_per_request * config.requests_per_batch


@dataclass
class RequestPlan:
    number: int  # request number within the job, which drives exemplar rotation
    first: int  # index, within the batch, of the first sample this request asks for
    k: int
    target: str
    attributes: dict[str, str]
    exemplar_ids: list[int] = field(default_factory=list)
    exemplar_texts: list[str] = field(default_factory=list)
    avoid: list[str] = field(default_factory=list)

    @property
    def cell(self) -> str:
        return cell_key(self.target, self.attributes)


def plan_generation_batch(
    *,
    config: JobConfig,
    batch_index: int,
    requested: int,
    produced_by_cell: dict[str, int],
    avoid_by_cell: dict[str, list[str]],
    exemplar_pool: dict[str, list[tuple[int, str]]],
) -> list[RequestPlan]:
    k, per_batch = config.samples_per_request, config.requests_per_batch
    start = batch_index * k * per_batch
    remaining = max(0, min(k * per_batch, requested - start))
    cells = all_cells(config)
    # Balancing against the project: a label's existing items count as if spread evenly over its attribute cells.
    baseline = config.baseline if config.balance_project else {}
    cells_per_label = max(1, len(cells) // len(config.labels))
    level = {
        cell_key(label, attrs): produced_by_cell.get(cell_key(label, attrs), 0)
        + int(baseline.get(label, 0)) / cells_per_label
        for label, attrs in cells
    }
    plans: list[RequestPlan] = []
    first = 0
    n_exemplars = config.exemplars
    for r in range(per_batch):
        size = min(k, remaining - first)
        if size <= 0:
            break
        number = batch_index * per_batch + r
        # Water-filling: the cell furthest behind gets the request; ties rotate with the request number so that
        # equal cells take turns across batches instead of the first ones always winning.
        order = sorted(range(len(cells)), key=lambda i: (level[cell_key(*cells[i])], (i - number) % len(cells)))
        label, attrs = cells[order[0]]
        level[cell_key(label, attrs)] += size
        pool = exemplar_pool.get(label, [])
        chosen = [pool[(number * n_exemplars + j) % len(pool)] for j in range(min(n_exemplars, len(pool)))]
        plans.append(RequestPlan(
            number=number, first=first, k=size, target=label, attributes=attrs,
            exemplar_ids=[pk for pk, _ in chosen], exemplar_texts=[text for _, text in chosen],
            avoid=list(avoid_by_cell.get(cell_key(label, attrs), []))[:2],
        ))
        first += size
    return plans


# ---------------------------------------------------------------------------------------------------------------------
# Sending and reading


@dataclass
class Tally:
    """Per-request bookkeeping, summed into the batch outcome."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    malformed: list[dict] = field(default_factory=list)  # {"reason", "raw", "response_id"}: kept for inspection
    errors: list[dict] = field(default_factory=list)  # {"kind", "message"}

    def add_result(self, result: ChatResult) -> None:
        self.requests += 1
        self.retries += result.retries
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens

    def add_error(self, exc: ProviderError) -> None:
        self.requests += 1
        self.retries += exc.retries
        self.errors.append({"kind": exc.kind, "message": storable(str(exc))[:300], **exc.detail})

    def add_malformed(self, exc: MalformedOutput, content: str, response_id: str) -> None:
        self.malformed.append({"reason": exc.reason, "detail": storable(str(exc))[:200], "raw": clip(content),
                               "response_id": response_id})

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.malformed += other.malformed
        self.errors += other.errors


def _read(result: ChatResult, choice: ChatChoice, parse: Callable[[str], Any]) -> Any:
    """``parse`` of the choice's content, unless the provider already found the answer untrustworthy."""
    problem = result.problem or choice.problem
    if problem is not None:
        raise problem
    return parse(choice.content)


def _ask(provider: Provider, call: ChatCall, tally: Tally, parse, retries: int):
    """Send ``call`` and parse its first choice; a malformed answer is kept and asked again up to ``retries`` times.

    Returns ``(result, parsed)`` or ``(result_or_None, None)`` with the failure reason in ``tally``.
    """
    result = None
    for _ in range(retries + 1):
        try:
            result = provider.chat(call)
        except ProviderError as exc:
            tally.add_error(exc)
            return None, None
        tally.add_result(result)
        choice = result.choices[0] if result.choices else ChatChoice(content="")
        try:
            return result, _read(result, choice, parse)
        except MalformedOutput as exc:
            tally.add_malformed(exc, choice.content, result.response_id)
    return result, None


@dataclass
class GeneratedSample:
    position: int  # index within the batch: part of the idempotency key
    text: str
    label: str
    plan: RequestPlan
    model: str
    response_id: str
    raw: str
    confidence: float | None = None
    votes: dict[str, float] = field(default_factory=dict)
    steps: dict = field(default_factory=dict)


@dataclass
class RequestOutcome:
    plan: RequestPlan
    samples: list[GeneratedSample]
    failed: dict[str, int]  # reason -> samples this request did not deliver
    tally: Tally


def _failure_reason(tally: Tally) -> str:
    if tally.errors:
        return tally.errors[-1]["kind"]
    return "malformed" if tally.malformed else "missing"


def _top_logprobs(labels: list[str]) -> int:
    """As many alternatives as the API gives: servers report logprobs from before the format's grammar, so tokens it
    forbids crowd the top of the list and a few alternatives can miss a label altogether."""
    return 20


def generate_one(provider: Provider, config: JobConfig, templates: dict, seed_key: str,
                 plan: RequestPlan) -> RequestOutcome:
    tally = Tally()
    call = ChatCall(
        messages=prompts.generation_messages(config.spec, templates, label=plan.target, count=plan.k,
                                             attributes=plan.attributes, exemplars=plan.exemplar_texts,
                                             avoid=plan.avoid),
        response_format=prompts.generation_format(labels=[plan.target], count=plan.k, mode=config.response_format),
        temperature=config.temperature, max_tokens=generation_cap(config, plan.k),
        intent={"kind": "generate", "target": plan.target, "k": plan.k, "seeds": plan.exemplar_texts,
                "seed_key": f"{seed_key}:r{plan.number}"},
    )
    result, parsed = _ask(provider, call, tally,
                          lambda c: parse_samples(c, allowed_labels=[plan.target], expected=plan.k),
                          config.parse_retries)
    if parsed is None:
        return RequestOutcome(plan, [], {_failure_reason(tally): plan.k}, tally)
    raw = clip(result.choices[0].content)
    samples = [
        GeneratedSample(position=plan.first + i, text=text, label=label, plan=plan, model=result.model,
                        response_id=result.response_id, raw=raw, votes={label: 1.0})
        for i, (text, label) in enumerate(parsed.samples)
    ]
    failed = {}
    if parsed.invalid:
        failed["invalid_sample"] = parsed.invalid
    missing = plan.k - len(samples) - parsed.invalid
    if missing:
        failed["missing"] = missing
    if config.steps >= 2:
        for sample in samples:
            _self_check(provider, config, templates, sample, tally)
    return RequestOutcome(plan, samples, failed, tally)


def _self_check(provider: Provider, config: JobConfig, templates: dict, sample: GeneratedSample,
                tally: Tally) -> None:
    """Step two: the model labels its own draft with a rationale; its reading becomes the proposed label. The
    confidence comes from the check's logprobs; without them it is left unknown: one answer agreeing with the label
    the draft was asked for is not evidence of a probability."""
    labels = config.spec.label_names
    logprobs = provider.capabilities.logprobs
    call = ChatCall(
        messages=prompts.check_messages(config.spec, templates, text=sample.text, label=sample.label),
        response_format=prompts.labelling_format(labels=labels, multi_label=False, mode=config.response_format,
                                                 with_rationale=True),
        temperature=0, logprobs=logprobs, top_logprobs=_top_logprobs(labels) if logprobs else None,
        max_tokens=CHECK_CAP_TOKENS, intent={"kind": "check"},
    )
    words = _label_words(config)
    result, verdict = _ask(provider, call, tally,
                           lambda c: parse_verdict(c, labels=labels, multi_label=False, words=words),
                           config.parse_retries)
    if verdict is None or not verdict.labels:
        sample.steps = {"draft_label": sample.label, "check": "no usable answer"}
        if verdict is not None and verdict.unmatched:
            sample.steps["check_answer"] = verdict.unmatched
        return
    checked = verdict.labels[0]
    probs = label_probs_from_logprobs(result.choices[0].logprobs, labels, checked)
    sample.steps = {"draft_label": sample.label, "check_label": checked, "agrees": checked == sample.label,
                    "rationale": verdict.rationale, "check_response_id": result.response_id}
    if probs:
        sample.steps["label_probs"] = probs
    sample.votes = {sample.label: 1.0}
    sample.votes[checked] = sample.votes.get(checked, 0.0) + 1.0
    sample.label = checked
    sample.confidence = probs.get(checked) if probs else None


def _label_words(config: JobConfig) -> dict[str, tuple[str, ...]]:
    return {label.name: tuple(label.words) for label in config.spec.labels}


def run_generation(*, provider: Provider, config: JobConfig, plans: list[RequestPlan], seed_key: str
                   ) -> list[RequestOutcome]:
    templates = prompts.templates_with_defaults(config.templates)
    return run_concurrently(lambda plan: generate_one(provider, config, templates, seed_key, plan), plans,
                            limit=provider.max_concurrency)


# ---------------------------------------------------------------------------------------------------------------------
# Labelling an existing pool (verbalizer)


@dataclass
class LabelOutcome:
    item_id: int
    labels: list[str]  # empty: abstained or failed (see ``failure``)
    confidence: float | None
    votes: dict[str, float]
    method: str  # "logprobs", "self-consistency", "label words"
    provenance: dict
    failure: str
    tally: Tally


class _LogprobsSeen:
    """Remembers across a batch's threads whether the endpoint returns logprobs, to stop asking when it does not."""

    def __init__(self):
        self.absent = False
        self._lock = threading.Lock()

    def mark_absent(self) -> None:
        with self._lock:
            self.absent = True


def label_one(provider: Provider, config: JobConfig, templates: dict, item_id: int, text: str,
              logprobs_seen: _LogprobsSeen) -> LabelOutcome:
    tally = Tally()
    spec = config.spec
    labels, multi = spec.label_names, spec.multi_label
    fmt = prompts.labelling_format(labels=labels, multi_label=multi, mode=config.response_format)
    words = _label_words(config)
    parse = lambda c: parse_verdict(c, labels=labels, multi_label=multi, words=words)  # noqa: E731
    retries = config.parse_retries
    intent = {"kind": "label", "text": text, "label_words": {l.name: list(l.words) for l in spec.labels}}

    if not provider.capabilities.is_llm:
        result, verdict = _ask(provider, ChatCall(messages=[], intent=intent), tally, parse, retries)
        votes = result.votes if result else {}
        chosen = verdict.labels if verdict else []
        confidence = round(votes[chosen[0]] / sum(votes.values()), 4) if chosen else None
        return LabelOutcome(item_id, chosen, confidence, votes, "label words", {"label_word_hits": votes},
                            "" if chosen else "abstained", tally)

    want_logprobs = provider.capabilities.logprobs and not multi and not logprobs_seen.absent
    call = ChatCall(messages=prompts.labelling_messages(spec, templates, text=text), response_format=fmt,
                    temperature=0, logprobs=want_logprobs, max_tokens=LABEL_CAP_TOKENS,
                    top_logprobs=_top_logprobs(labels) if want_logprobs else None, intent=intent)
    result, verdict = _ask(provider, call, tally, parse, retries)
    if verdict is None:
        return LabelOutcome(item_id, [], None, {}, "", {}, _failure_reason(tally), tally)
    provenance = {"response_id": result.response_id, "model": result.model}
    if verdict.unmatched:
        provenance["unmatched"] = verdict.unmatched
    if verdict.labels and want_logprobs:
        probs = label_probs_from_logprobs(result.choices[0].logprobs, labels, verdict.labels[0])
        if probs:
            provenance["label_probs"] = probs
            return LabelOutcome(item_id, verdict.labels, probs.get(verdict.labels[0]), {verdict.labels[0]: 1.0},
                                "logprobs", provenance, "", tally)
        if not result.choices[0].logprobs:
            logprobs_seen.mark_absent()  # none at all: the endpoint does not give them; an uninformative one may
    return _self_consistency(provider, config, templates, text, item_id, verdict, provenance, tally)


def _self_consistency(provider, config, templates, text, item_id, first: Verdict, provenance, tally) -> LabelOutcome:
    """No logprobs: gather k answers and let them vote. One request with n=k-1 where the endpoint honours ``n``;
    otherwise (or for the answers an ignored ``n`` did not bring) one request per answer, over the prompt variants.
    Votes are divided by the answers actually received (an abstention is an answer; a failed request is not), and
    with fewer than two answers there is no confidence at all: one answer voting for itself is not 1.0."""
    spec = config.spec
    labels, multi = spec.label_names, spec.multi_label
    k = config.consistency_k
    fmt = prompts.labelling_format(labels=labels, multi_label=multi, mode=config.response_format)
    words = _label_words(config)
    parse = lambda c: parse_verdict(c, labels=labels, multi_label=multi, words=words)  # noqa: E731
    answers: list[list[str]] = [first.labels]
    unmatched = [first.unmatched] if first.unmatched else []
    if config.consistency == "samples" and provider.capabilities.n:
        call = ChatCall(messages=prompts.labelling_messages(spec, templates, text=text), response_format=fmt,
                        n=k - 1, temperature=CONSISTENCY_TEMPERATURE, max_tokens=LABEL_CAP_TOKENS,
                        intent={"kind": "label"})
        try:
            result = provider.chat(call)
        except ProviderError as exc:
            tally.add_error(exc)
        else:
            tally.add_result(result)
            choices = result.choices[:k - 1]
            if result.problem is not None:
                # One untrustworthy answer, however many choices it carries.
                tally.add_malformed(result.problem, choices[0].content if choices else "", result.response_id)
                choices = []
            for choice in choices:
                try:
                    verdict = _read(result, choice, parse)
                except MalformedOutput as exc:
                    tally.add_malformed(exc, choice.content, result.response_id)
                else:
                    answers.append(verdict.labels)
                    unmatched += [verdict.unmatched] if verdict.unmatched else []
    asked = len(answers)
    for variant in range(asked, k):
        # The instructions repeat after len(LABEL_INSTRUCTIONS) variants; a repeat is sampled warm to stay independent.
        repeat = variant >= len(prompts.LABEL_INSTRUCTIONS)
        call = ChatCall(messages=prompts.labelling_messages(spec, templates, text=text, variant=variant),
                        response_format=fmt, temperature=CONSISTENCY_TEMPERATURE if repeat else 0,
                        max_tokens=LABEL_CAP_TOKENS, intent={"kind": "label"})
        _, verdict = _ask(provider, call, tally, parse, 0)
        if verdict is not None:
            answers.append(verdict.labels)
            unmatched += [verdict.unmatched] if verdict.unmatched else []
    votes: dict[str, float] = {}
    for answer in answers:
        for label in answer:
            votes[label] = votes.get(label, 0.0) + 1.0
    provenance["answers"] = len(answers)
    if unmatched:
        provenance["unmatched"] = unmatched[0]
    if not votes:
        return LabelOutcome(item_id, [], None, {}, "self-consistency", provenance,
                            "unmatched_label" if unmatched else "abstained", tally)
    if multi:
        chosen = [label for label in labels if votes.get(label, 0) > len(answers) / 2]
        chosen = chosen or [max(votes, key=votes.get)]
        confidence = min(votes[label] for label in chosen) / len(answers)
    else:
        # Ties go to the first (temperature 0) answer, which is the model's own best guess.
        best = max(votes.values())
        chosen = first.labels if first.labels and votes.get(first.labels[0]) == best else [max(votes, key=votes.get)]
        confidence = votes[chosen[0]] / len(answers)
    return LabelOutcome(item_id, chosen, round(confidence, 4) if len(answers) >= 2 else None, votes,
                        "self-consistency", provenance, "", tally)


def run_labelling(*, provider: Provider, config: JobConfig, items: list[tuple[int, str]]) -> list[LabelOutcome]:
    templates = prompts.templates_with_defaults(config.templates)
    seen = _LogprobsSeen()
    return run_concurrently(lambda item: label_one(provider, config, templates, item[0], item[1], seen), items,
                            limit=provider.max_concurrency)
