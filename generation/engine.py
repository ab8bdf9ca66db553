"""The network half of a batch: plan its requests, send them concurrently, read the answers. No database writes.

``services.job_run_batch`` gives this module a job's config snapshot and what earlier batches produced, and stores
what comes back. Planning is deterministic (the same batch planned twice asks for the same thing), which is what lets
a retried batch be idempotent. Dataset-wise steering lives here: each request goes to the label / attribute cell that
is furthest behind (counting the project's existing items when the lead asked to balance against them), and the
near-duplicates a cell produced last batch are shown to the next request for that cell as examples to avoid.
"""
from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field

from generation import prompts
from generation.parsing import (
    MalformedOutput,
    clip,
    label_probs_from_logprobs,
    parse_samples,
    parse_verdict,
)
from generation.providers import ChatCall, ChatResult, Provider, ProviderError, run_concurrently


def cell_key(label: str, attributes: dict[str, str]) -> str:
    return json.dumps([label, sorted(attributes.items())], separators=(",", ":"))


def all_cells(config: dict) -> list[tuple[str, dict[str, str]]]:
    """Every (label, attributes) combination the job must cover evenly: the label x attribute cross-product."""
    labels = config["labels"]
    dims: dict[str, list[str]] = config.get("attributes") or {}
    names = list(dims)
    combos = itertools.product(*(dims[n] for n in names)) if names else [()]
    return [(label, dict(zip(names, combo))) for combo in combos for label in labels]


def spec_from_config(config: dict) -> prompts.TaskSpec:
    raw = config["spec"]
    return prompts.TaskSpec(
        task=raw.get("task", ""),
        labels=tuple(prompts.LabelInfo(l["name"], l.get("description", ""), tuple(l.get("words", ())))
                     for l in raw["labels"]),
        multi_label=bool(raw.get("multi_label")),
    )


def batch_size(config: dict, mode_is_labelling: bool) -> int:
    """Samples (or pool items) per batch."""
    if mode_is_labelling:
        return config["requests_per_batch"]
    return config["samples_per_request"] * config["requests_per_batch"]


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
    config: dict,
    batch_index: int,
    requested: int,
    produced_by_cell: dict[str, int],
    avoid_by_cell: dict[str, list[str]],
    exemplar_pool: dict[str, list[tuple[int, str]]],
) -> list[RequestPlan]:
    k, per_batch = config["samples_per_request"], config["requests_per_batch"]
    start = batch_index * k * per_batch
    remaining = max(0, min(k * per_batch, requested - start))
    cells = all_cells(config)
    # Balancing against the project: a label's existing items count as if spread evenly over its attribute cells.
    baseline = (config.get("baseline") or {}) if config.get("balance_project") else {}
    cells_per_label = max(1, len(cells) // len(config["labels"]))
    level = {
        cell_key(label, attrs): produced_by_cell.get(cell_key(label, attrs), 0)
        + int(baseline.get(label, 0)) / cells_per_label
        for label, attrs in cells
    }
    plans: list[RequestPlan] = []
    first = 0
    n_exemplars = config.get("exemplars", 0)
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
        self.errors.append({"kind": exc.kind, "message": str(exc)[:300]})

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.malformed += other.malformed
        self.errors += other.errors


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
        content = result.choices[0].content if result.choices else ""
        try:
            return result, parse(content)
        except MalformedOutput as exc:
            tally.malformed.append({"reason": exc.reason, "detail": str(exc)[:200], "raw": clip(content),
                                    "response_id": result.response_id})
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
    return min(20, max(5, len(labels)))


def generate_one(provider: Provider, config: dict, spec: prompts.TaskSpec, templates: dict, seed_key: str,
                 plan: RequestPlan) -> RequestOutcome:
    tally = Tally()
    call = ChatCall(
        messages=prompts.generation_messages(spec, templates, label=plan.target, count=plan.k,
                                             attributes=plan.attributes, exemplars=plan.exemplar_texts,
                                             avoid=plan.avoid),
        response_format=prompts.generation_format(labels=[plan.target], count=plan.k,
                                                  mode=config["response_format"]),
        temperature=config.get("temperature"),
        intent={"kind": "generate", "target": plan.target, "k": plan.k, "seeds": plan.exemplar_texts,
                "seed_key": f"{seed_key}:r{plan.number}"},
    )
    result, parsed = _ask(provider, call, tally,
                          lambda c: parse_samples(c, allowed_labels=[plan.target], expected=plan.k),
                          config.get("parse_retries", 2))
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
    if config.get("steps", 1) >= 2:
        for sample in samples:
            _self_check(provider, config, spec, templates, sample, tally)
    return RequestOutcome(plan, samples, failed, tally)


def _self_check(provider: Provider, config: dict, spec: prompts.TaskSpec, templates: dict, sample: GeneratedSample,
                tally: Tally) -> None:
    """Step two: the model labels its own draft with a rationale; its reading becomes the proposed label."""
    labels = spec.label_names
    call = ChatCall(
        messages=prompts.check_messages(spec, templates, text=sample.text, label=sample.label),
        response_format=prompts.labelling_format(labels=labels, multi_label=False, mode=config["response_format"],
                                                 with_rationale=True),
        temperature=0, logprobs=True, top_logprobs=_top_logprobs(labels), intent={"kind": "check"},
    )
    result, verdict = _ask(provider, call, tally, lambda c: parse_verdict(c, labels=labels, multi_label=False),
                           config.get("parse_retries", 2))
    if verdict is None or not verdict.labels:
        sample.steps = {"draft_label": sample.label, "check": "no usable answer"}
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
    sample.confidence = probs.get(checked) if probs else sample.votes[checked] / 2


def run_generation(*, provider: Provider, config: dict, plans: list[RequestPlan], seed_key: str
                   ) -> list[RequestOutcome]:
    spec = spec_from_config(config)
    templates = prompts.templates_with_defaults(config.get("templates"))
    return run_concurrently(lambda plan: generate_one(provider, config, spec, templates, seed_key, plan), plans,
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


def label_one(provider: Provider, config: dict, spec: prompts.TaskSpec, templates: dict, item_id: int, text: str,
              logprobs_seen: _LogprobsSeen) -> LabelOutcome:
    tally = Tally()
    labels, multi = spec.label_names, spec.multi_label
    fmt = prompts.labelling_format(labels=labels, multi_label=multi, mode=config["response_format"])
    parse = lambda c: parse_verdict(c, labels=labels, multi_label=multi)  # noqa: E731
    retries = config.get("parse_retries", 2)
    intent = {"kind": "label", "text": text, "label_words": {l.name: list(l.words) for l in spec.labels}}

    if not provider.is_llm:
        result, verdict = _ask(provider, ChatCall(messages=[], intent=intent), tally, parse, retries)
        votes = result.votes if result else {}
        chosen = verdict.labels if verdict else []
        confidence = round(votes[chosen[0]] / sum(votes.values()), 4) if chosen else None
        return LabelOutcome(item_id, chosen, confidence, votes, "label words", {"label_word_hits": votes},
                            "" if chosen else "abstained", tally)

    want_logprobs = not multi and not logprobs_seen.absent
    call = ChatCall(messages=prompts.labelling_messages(spec, templates, text=text), response_format=fmt,
                    temperature=0, logprobs=want_logprobs,
                    top_logprobs=_top_logprobs(labels) if want_logprobs else None, intent=intent)
    result, verdict = _ask(provider, call, tally, parse, retries)
    if verdict is None:
        return LabelOutcome(item_id, [], None, {}, "", {}, _failure_reason(tally), tally)
    provenance = {"response_id": result.response_id, "model": result.model}
    if verdict.labels and want_logprobs:
        probs = label_probs_from_logprobs(result.choices[0].logprobs, labels, verdict.labels[0])
        if probs:
            provenance["label_probs"] = probs
            return LabelOutcome(item_id, verdict.labels, probs.get(verdict.labels[0]), {verdict.labels[0]: 1.0},
                                "logprobs", provenance, "", tally)
        logprobs_seen.mark_absent()
    return _self_consistency(provider, config, spec, templates, text, item_id, verdict.labels, provenance, tally)


def _self_consistency(provider, config, spec, templates, text, item_id, first, provenance, tally) -> LabelOutcome:
    """No logprobs: ask k times (k prompt variants, or one request with n=k samples) and let the answers vote."""
    labels, multi = spec.label_names, spec.multi_label
    k = config.get("consistency_k", 5)
    fmt = prompts.labelling_format(labels=labels, multi_label=multi, mode=config["response_format"])
    answers: list[list[str]] = [first]
    if config.get("consistency") == "variants":
        for variant in range(1, k):
            call = ChatCall(messages=prompts.labelling_messages(spec, templates, text=text, variant=variant),
                            response_format=fmt, temperature=0, intent={"kind": "label"})
            _, verdict = _ask(provider, call, tally, lambda c: parse_verdict(c, labels=labels, multi_label=multi),
                              0)
            if verdict is not None:
                answers.append(verdict.labels)
    else:
        call = ChatCall(messages=prompts.labelling_messages(spec, templates, text=text), response_format=fmt,
                        n=k - 1, temperature=config.get("consistency_temperature", 0.8), intent={"kind": "label"})
        try:
            result = provider.chat(call)
        except ProviderError as exc:
            tally.add_error(exc)
        else:
            tally.add_result(result)
            for choice in result.choices:
                try:
                    answers.append(parse_verdict(choice.content, labels=labels, multi_label=multi).labels)
                except MalformedOutput as exc:
                    tally.malformed.append({"reason": exc.reason, "detail": str(exc)[:200],
                                            "raw": clip(choice.content), "response_id": result.response_id})
    votes: dict[str, float] = {}
    for answer in answers:
        for label in answer:
            votes[label] = votes.get(label, 0.0) + 1.0
    provenance["answers"] = len(answers)
    if not votes:
        return LabelOutcome(item_id, [], None, {}, "self-consistency", provenance, "abstained", tally)
    if multi:
        chosen = [label for label in labels if votes.get(label, 0) > len(answers) / 2]
        chosen = chosen or [max(votes, key=votes.get)]
        confidence = min(votes[label] for label in chosen) / len(answers)
    else:
        # Ties go to the first (temperature 0) answer, which is the model's own best guess.
        best = max(votes.values())
        chosen = first if first and votes.get(first[0]) == best else [max(votes, key=votes.get)]
        confidence = votes[chosen[0]] / len(answers)
    return LabelOutcome(item_id, chosen, round(confidence, 4), votes, "self-consistency", provenance, "", tally)


def run_labelling(*, provider: Provider, config: dict, items: list[tuple[int, str]]) -> list[LabelOutcome]:
    spec = spec_from_config(config)
    templates = prompts.templates_with_defaults(config.get("templates"))
    seen = _LogprobsSeen()
    return run_concurrently(lambda item: label_one(provider, config, spec, templates, item[0], item[1], seen), items,
                            limit=provider.max_concurrency)
