"""Writes for generation and labelling jobs: create, claim, run batch by batch, cancel.

A job is claimed with a conditional UPDATE (one worker holds it; a redelivered task with the same id may resume it).
Each batch is planned deterministically, sent to the provider outside any transaction, then stored in ONE transaction
that also creates the ``GenerationBatch`` row (unique per job and index) and bumps the counters with F() expressions:
a batch that ran before is a no-op, and two workers racing on one batch store it once (the loser hits the unique key
and rolls back). Items carry ``idempotency_key = job{id}:b{index}:{position}`` as a second guard.

Counting: every requested sample ends as exactly one of produced (stored ``proposed``), filtered (stored ``filtered``
with its reason) or failed (never obtained: provider error, malformed output, missing or invalid entries), so
``produced + filtered + failed == requested`` once a job has run all its batches.
"""
from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.items.services import ServiceError, item_snapshot
from annotation.models import (
    AttributeDimension,
    Item,
    Label,
    Project,
    Review,
    ReviewAction,
    Source,
    Status,
)
from annotation.selection import selection_request_round
from generation import engine, filters, prompts
from generation.models import GenerationBatch, GenerationJob, JobEvent, JobMode, JobStatus, NearDuplicateKey
from generation.providers import OFFLINE, Provider, ProviderConfigError, provider_for

MAX_CELLS = 2000
MAX_POOL_ITEMS = 20000
EXEMPLAR_POOL_PER_LABEL = 200
MALFORMED_EVENTS_PER_BATCH = 5
LABELLABLE = (Status.PROPOSED, Status.NEEDS_REVIEW)
_IN_CHUNK = 500  # parameters per IN (...) query; SQLite builds may cap a statement at 999


# ---------------------------------------------------------------------------------------------------------------------
# Creating a job


def task_spec(*, project: Project) -> dict:
    labels = Label.objects.filter(project=project).order_by("order", "id")
    return {
        "task": project.description,
        "multi_label": project.multi_label,
        "labels": [{"name": l.name, "description": l.description, "words": list(l.label_words or [])}
                   for l in labels],
    }


def project_label_counts(*, project: Project) -> dict[str, int]:
    """Items per label that are in or headed for the dataset (not filtered or rejected), for balancing."""
    counts: Counter[str] = Counter()
    rows = (Item.objects.filter(project=project, archived_at__isnull=True)
            .exclude(status__in=[Status.FILTERED, Status.REJECTED])
            .values_list("final_labels", "proposed_labels"))
    for final, proposed in rows.iterator(chunk_size=2000):
        counts.update(final or proposed or [])
    return dict(counts)


def labelling_pool(*, project: Project, limit: int) -> list[int]:
    """Pool items the verbalizer may label: pending (proposed or needs review) with no LLM label yet, oldest first."""
    ids = []
    rows = (Item.objects.filter(project=project, status__in=LABELLABLE, archived_at__isnull=True)
            .order_by("id").values_list("id", "proposed_labels"))
    for pk, proposed in rows.iterator(chunk_size=2000):
        if not proposed:
            ids.append(pk)
            if len(ids) >= limit:
                break
    return ids


def job_config(*, project: Project, mode: str, provider: str, options: dict) -> tuple[dict, int]:
    """The job's full, frozen configuration and its requested count; raises ServiceError naming the problem."""
    spec = task_spec(project=project)
    all_labels = [l["name"] for l in spec["labels"]]
    if not all_labels:
        raise ServiceError("The project has no labels yet; add labels before generating.")
    labels = [l for l in options.get("labels") or all_labels if l in all_labels]
    if not labels:
        raise ServiceError("Choose at least one of the project's labels.")
    for name, text in (options.get("templates") or {}).items():
        try:
            prompts.validate_template(name, text)
        except prompts.TemplateProblem as exc:
            raise ServiceError(str(exc)) from None
    if provider == OFFLINE and options.get("steps", 1) > 1:
        raise ServiceError("The self-check step needs an LLM; offline augmentation cannot check labels.")
    config = {
        "spec": spec,
        "labels": labels,
        "attributes": {},
        "samples_per_request": int(options.get("samples_per_request", 5)),
        "requests_per_batch": int(options.get("requests_per_batch", 16)),
        "exemplars": int(options.get("exemplars", 3)),
        "temperature": options.get("temperature", 0.9),
        "steps": int(options.get("steps", 1)),
        "balance_project": bool(options.get("balance_project", True)),
        "response_format": options.get("response_format", "json_schema"),
        "parse_retries": int(options.get("parse_retries", 2)),
        "consistency": options.get("consistency", "samples"),
        "consistency_k": int(options.get("consistency_k", 5)),
        "max_concurrency": int(options.get("max_concurrency", 8)),
        "filters": dict(options.get("filters") or {}),
        "templates": dict(options.get("templates") or {}),
        "price_prompt_per_1k": str(options.get("price_prompt_per_1k") or ""),
        "price_completion_per_1k": str(options.get("price_completion_per_1k") or ""),
    }
    if mode == JobMode.LABEL_POOL:
        if spec["multi_label"] is False and config["consistency_k"] < 2:
            config["consistency_k"] = 2
        config["item_ids"] = labelling_pool(project=project, limit=min(int(options["count"]), MAX_POOL_ITEMS))
        if not config["item_ids"]:
            raise ServiceError("No pool items wait for a label (pending items with no proposed label).")
        return config, len(config["item_ids"])
    if mode == JobMode.ATTRIBUTE_CONDITIONED:
        dims = AttributeDimension.objects.filter(project=project).order_by("order", "id")
        config["attributes"] = {d.name: [str(v) for v in d.values] for d in dims if d.values}
        if not config["attributes"]:
            raise ServiceError("Attribute-conditioned generation needs at least one attribute dimension with values.")
        cells = len(engine.all_cells(config))
        if cells > MAX_CELLS:
            raise ServiceError(f"The label x attribute cross-product has {cells} cells; the limit is {MAX_CELLS}.")
    config["baseline"] = project_label_counts(project=project) if config["balance_project"] else {}
    if provider == OFFLINE and config["exemplars"] < 1:
        config["exemplars"] = 3  # offline augmentation works from seeds, which are the exemplars
    return config, int(options["count"])


def job_create(*, project: Project, user, mode: str, provider: str, model_name: str = "", options: dict,
               enqueue: bool = True, run_now: bool = False) -> GenerationJob:
    """Create a job from validated form data and queue it once the transaction commits; ``run_now`` runs it in
    this process instead (the demo's offline labelling, management commands). This is the one function other apps
    call."""
    from generation import tasks  # tasks imports this module

    if mode not in JobMode.values:
        raise ServiceError(f"Unknown mode '{mode}'.")
    config, requested = job_config(project=project, mode=mode, provider=provider, options=options)
    size = engine.batch_size(config, mode == JobMode.LABEL_POOL)
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project, created_by=user, mode=mode, provider=provider,
            model_name="" if provider == OFFLINE else model_name or settings.OPENAI_MODEL, config=config,
            requested=requested,
            batches_total=math.ceil(requested / size),
        )
        _event(job, "created", f"{job.get_mode_display()}: {requested} requested in {job.batches_total} batches")
        if enqueue and not run_now:
            tasks.job_run.delay_on_commit(job.id)
    if run_now:
        job = job_run(job_id=job.id, token=f"inline-{job.id}")
    return job


def job_preview(*, project: Project, mode: str, provider: str, options: dict, model_name: str = "") -> list[dict]:
    """The exact messages of the job's first request (for labelling: the first pool item); the model name does not
    change them."""
    config, _ = job_config(project=project, mode=mode, provider=provider, options=options)
    spec = engine.spec_from_config(config)
    templates = prompts.templates_with_defaults(config.get("templates"))
    if mode == JobMode.LABEL_POOL:
        text = Item.objects.filter(pk=config["item_ids"][0]).values_list("text", flat=True).first() or ""
        return prompts.labelling_messages(spec, templates, text=text)
    plan = engine.plan_generation_batch(config=config, batch_index=0, requested=options["count"],
                                        produced_by_cell={}, avoid_by_cell={},
                                        exemplar_pool=exemplar_pool(project=project, labels=config["labels"]))[0]
    return prompts.generation_messages(spec, templates, label=plan.target, count=plan.k, attributes=plan.attributes,
                                       exemplars=plan.exemplar_texts)


# ---------------------------------------------------------------------------------------------------------------------
# Running a job


def _event(job: GenerationJob, kind: str, message: str = "", data: dict | None = None) -> JobEvent:
    return JobEvent.objects.create(job=job, kind=kind, message=message[:2000], data=data or {})


def job_claim(*, job_id: int, token: str) -> bool:
    """Take a queued job, or resume a running one this same token (a redelivered task) holds; True if ours."""
    taken = GenerationJob.objects.filter(
        Q(status=JobStatus.QUEUED, cancel_requested=False) | Q(status=JobStatus.RUNNING, claimed_by=token),
        pk=job_id,
    ).update(status=JobStatus.RUNNING, claimed_by=token[:200], started_at=Coalesce(F("started_at"), timezone.now()))
    return taken == 1


def job_cancel(*, job: GenerationJob, user=None) -> GenerationJob:
    """A queued job stops at once; a running one stops before its next batch (a batch in flight still lands)."""
    now = timezone.now()
    if GenerationJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now
    ):
        _event(job, "cancelled", f"cancelled before it started by {getattr(user, 'username', 'system')}")
    elif GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True):
        _event(job, "cancel_requested", f"cancel requested by {getattr(user, 'username', 'system')}")
    job.refresh_from_db()
    return job


def job_run(*, job_id: int, token: str, provider: Provider | None = None) -> GenerationJob | None:
    """Claim the job and run its remaining batches; None when another worker holds it or it is not runnable."""
    if not job_claim(job_id=job_id, token=token):
        return None
    job = GenerationJob.objects.select_related("project").get(pk=job_id)
    _event(job, "claimed", f"running on {token}")
    try:
        provider = provider or provider_for(name=job.provider, model=job.model_name,
                                            max_concurrency=job.config.get("max_concurrency"))
    except ProviderConfigError as exc:
        return _finish(job, JobStatus.FAILED, str(exc))
    near_dup_index_sync(project=job.project)
    pool = None
    if job.mode != JobMode.LABEL_POOL:
        pool = exemplar_pool(project=job.project, labels=job.config["labels"])
    try:
        if job.mode == JobMode.LABEL_POOL:
            finished = _run_labelling_batches(job=job, provider=provider)
        else:
            finished = _run_generation_batches(job=job, provider=provider, exemplars=pool)
        if not finished:
            return _finish(job, JobStatus.CANCELLED, "cancelled between batches")
    except (OperationalError, InterfaceError):
        raise  # the database is away: the task retries and resumes at the first batch not yet stored
    except Exception as exc:
        # Bad model output never gets here (it is counted); this is a bug or an outage, so it must be visible.
        _finish(job, JobStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500])
        raise
    return _finish(job, JobStatus.SUCCEEDED, "all batches done")


def _cancel_requested(job: GenerationJob) -> bool:
    return GenerationJob.objects.filter(pk=job.pk, cancel_requested=True).exists()


def _run_labelling_batches(*, job: GenerationJob, provider: Provider) -> bool:
    for index in range(job.batches_total):
        if _cancel_requested(job):
            return False
        job_run_batch(job=job, index=index, provider=provider)
    return True


def _run_generation_batches(*, job: GenerationJob, provider: Provider,
                            exemplars: dict[str, list[tuple[int, str]]]) -> bool:
    """Send each batch while the previous one is filtered and stored, so the provider never waits for the database.

    Only one batch is on the network at a time (the provider's concurrency limit holds); this thread alone touches
    the database. False when the job was cancelled (the batch already on the network is still stored).
    """
    done = set(GenerationBatch.objects.filter(job=job, done=True).values_list("index", flat=True))
    cancelled = False
    in_flight = None  # (index, plans, future of the provider's answers)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch") as ahead:
        for index in range(job.batches_total):
            if index in done:
                continue
            if _cancel_requested(job):
                cancelled = True
                break
            plans = _plan_generation(job=job, index=index, exemplars=exemplars,
                                     pending=in_flight[1] if in_flight else ())
            previous = in_flight
            previous_outcomes = previous[2].result() if previous else None
            in_flight = (index, plans, ahead.submit(engine.run_generation, provider=provider, config=job.config,
                                                    plans=plans, seed_key=f"job{job.id}:b{index}"))
            if previous:
                _store_generation(job=job, index=previous[0], provider=provider, plans=previous[1],
                                  outcomes=previous_outcomes)
        if in_flight:
            _store_generation(job=job, index=in_flight[0], provider=provider, plans=in_flight[1],
                              outcomes=in_flight[2].result())
    return not cancelled


def _finish(job: GenerationJob, status: str, message: str) -> GenerationJob:
    finished = GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=status, finished_at=timezone.now()
    )
    job.refresh_from_db()
    _event(job, status, message, {"produced": job.produced, "filtered": job.filtered, "failed": job.failed,
                                  "requested": job.requested})
    if finished and job.produced:
        # New items wait as ``proposed`` (labelled pool items keep their status but have new LLM labels): a scoring
        # round routes them to review or auto-accept; one round at a time is queued per project, however many jobs end.
        selection_request_round(job.project_id, force=True)
    return job


def job_run_batch(*, job: GenerationJob, index: int, provider: Provider,
                  exemplars: dict[str, list[tuple[int, str]]] | None = None) -> dict:
    """Run batch ``index`` and store it; running it again returns the stored outcome and changes nothing."""
    stored = GenerationBatch.objects.filter(job=job, index=index, done=True).values_list("outcome", flat=True).first()
    if stored is not None:
        return stored
    if job.mode == JobMode.LABEL_POOL:
        return _label_batch(job=job, index=index, provider=provider)
    return _generation_batch(job=job, index=index, provider=provider,
                             exemplars=exemplars if exemplars is not None
                             else exemplar_pool(project=job.project, labels=job.config["labels"]))


def exemplar_pool(*, project: Project, labels: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Accepted items per label (id, text), oldest first, a bounded number each: exemplars and offline seeds."""
    pool: dict[str, list[tuple[int, str]]] = {label: [] for label in labels}
    rows = (Item.objects.filter(project=project, status=Status.ACCEPTED, archived_at__isnull=True)
            .order_by("id").values_list("id", "text", "final_labels"))
    for pk, text, final in rows.iterator(chunk_size=2000):
        for label in final or []:
            if label in pool and len(pool[label]) < EXEMPLAR_POOL_PER_LABEL:
                pool[label].append((pk, text))
    return pool


def _earlier_outcomes(job: GenerationJob, index: int) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Samples stored per cell by the batches before ``index``, and the near-duplicates the latest one met."""
    produced: Counter[str] = Counter()
    avoid: dict[str, list[str]] = {}
    rows = GenerationBatch.objects.filter(job=job, done=True, index__lt=index).order_by("index")
    for outcome in rows.values_list("outcome", flat=True):
        produced.update(outcome.get("cells") or {})
        avoid = outcome.get("avoid") or {}
    return dict(produced), avoid


class _ProjectIndex:
    """filters.ProjectIndex over the database: exact hashes and LSH band keys of the project's non-filtered items."""

    def __init__(self, project_id: int):
        self.project_id = project_id

    def existing_hashes(self, hashes: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        hashes = sorted(hashes)
        for start in range(0, len(hashes), _IN_CHUNK):
            rows = (Item.objects.filter(project_id=self.project_id, content_hash__in=hashes[start:start + _IN_CHUNK])
                    .exclude(status=Status.FILTERED).values_list("content_hash", "id"))
            for h, pk in rows:
                found.setdefault(h, pk)
        return found

    def near_candidates(self, bands: set[int]) -> dict[int, tuple[str, set[int]]]:
        matched: dict[int, set[int]] = {}
        bands_list = sorted(bands)
        for start in range(0, len(bands_list), _IN_CHUNK):
            for item_id, band in NearDuplicateKey.objects.filter(
                project_id=self.project_id, band__in=bands_list[start:start + _IN_CHUNK]
            ).values_list("item_id", "band"):
                matched.setdefault(item_id, set()).add(band)
        found: dict[int, tuple[str, set[int]]] = {}
        id_list = sorted(matched)
        for start in range(0, len(id_list), _IN_CHUNK):
            for pk, text in (Item.objects.filter(pk__in=id_list[start:start + _IN_CHUNK])
                             .exclude(status=Status.FILTERED).values_list("id", "text")):
                found[pk] = (text, matched[pk])
        return found


def near_dup_index_sync(*, project: Project) -> int:
    """Index the band keys of project items that have none yet (imports, items from before this feature)."""
    indexed = NearDuplicateKey.objects.filter(item_id=OuterRef("pk"))
    missing = (Item.objects.filter(project=project).exclude(status=Status.FILTERED)
               .exclude(Exists(indexed)).values_list("id", "text"))
    rows, count = [], 0
    for pk, text in missing.iterator(chunk_size=2000):
        rows += [NearDuplicateKey(project=project, item_id=pk, band=b) for b in filters.band_keys(filters.shingles(text))]
        count += 1
        if len(rows) >= 5000:
            NearDuplicateKey.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    NearDuplicateKey.objects.bulk_create(rows, ignore_conflicts=True)
    return count


def _cost(job: GenerationJob, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    prompt_price = job.config.get("price_prompt_per_1k") or ""
    completion_price = job.config.get("price_completion_per_1k") or ""
    if not prompt_price and not completion_price:
        return None
    return (Decimal(prompt_tokens) * Decimal(prompt_price or "0")
            + Decimal(completion_tokens) * Decimal(completion_price or "0")) / 1000


def _plan_generation(*, job: GenerationJob, index: int, exemplars: dict[str, list[tuple[int, str]]],
                     pending: list[engine.RequestPlan] = ()) -> list[engine.RequestPlan]:
    """Plan batch ``index`` from what earlier batches stored, counting a batch still on the network (``pending``)
    as if it had delivered what it asked for, so overlapping batches do not all chase the same cells."""
    produced_by_cell, avoid_by_cell = _earlier_outcomes(job, index)
    for plan in pending:
        produced_by_cell[plan.cell] = produced_by_cell.get(plan.cell, 0) + plan.k
    return engine.plan_generation_batch(config=job.config, batch_index=index, requested=job.requested,
                                        produced_by_cell=produced_by_cell, avoid_by_cell=avoid_by_cell,
                                        exemplar_pool=exemplars)


def _generation_batch(*, job: GenerationJob, index: int, provider: Provider,
                      exemplars: dict[str, list[tuple[int, str]]]) -> dict:
    plans = _plan_generation(job=job, index=index, exemplars=exemplars)
    outcomes = engine.run_generation(provider=provider, config=job.config, plans=plans,
                                     seed_key=f"job{job.id}:b{index}")
    return _store_generation(job=job, index=index, provider=provider, plans=plans, outcomes=outcomes)


def _store_generation(*, job: GenerationJob, index: int, provider: Provider, plans: list[engine.RequestPlan],
                      outcomes: list[engine.RequestOutcome]) -> dict:
    config = job.config
    samples = [s for o in outcomes for s in o.samples]
    candidates = [filters.Candidate(text=s.text, exemplars=s.plan.exemplar_texts) for s in samples]
    filters.apply_filters(candidates, settings=filters.FilterSettings.from_config(config.get("filters")),
                          index=_ProjectIndex(job.project_id))
    tally = engine.Tally()
    failed: Counter[str] = Counter()
    for o in outcomes:
        tally.merge(o.tally)
        failed.update(o.failed)
    source = Source.LLM if provider.is_llm else Source.AUGMENT
    items = []
    for sample, candidate in zip(samples, candidates):
        items.append(Item(
            project_id=job.project_id, text=sample.text, source=source,
            status=Status.FILTERED if candidate.reason else Status.PROPOSED,
            filter_reason=candidate.detail[:200], proposed_labels=[sample.label], llm_confidence=sample.confidence,
            llm_votes=sample.votes, generation_job_id=job.id, content_hash=candidate.hash,
            idempotency_key=f"job{job.id}:b{index}:{sample.position}",
            provenance={
                "job": job.id, "batch": index, "mode": job.mode, "provider": provider.name,
                "model": sample.model, "response_id": sample.response_id,
                "conditions": {"label": sample.plan.target, "attributes": sample.plan.attributes},
                "exemplar_ids": sample.plan.exemplar_ids, "steps": sample.steps, "raw": sample.raw[:1000],
            },
        ))
    filtered_by_reason = Counter(c.reason for c in candidates if c.reason)
    cells = Counter(s.plan.cell for s, c in zip(samples, candidates) if not c.reason)
    avoid: dict[str, list[str]] = {}
    for s, c in zip(samples, candidates):
        if c.reason in ("duplicate", "near_duplicate") and len(avoid.setdefault(s.plan.cell, [])) < 2:
            avoid[s.plan.cell].append(s.text[:200])
    outcome = {
        "requested": sum(p.k for p in plans),
        "produced": sum(1 for c in candidates if not c.reason),
        "filtered": len(candidates) - sum(1 for c in candidates if not c.reason),
        "failed": sum(failed.values()),
        "parsed": len(samples),
        "filtered_by_reason": dict(filtered_by_reason),
        "failed_by_reason": dict(failed),
        "cells": dict(cells),
        "avoid": avoid,
    }
    return _store_batch(job=job, index=index, outcome=outcome, tally=tally, items=items, candidates=candidates)


def _store_batch(*, job: GenerationJob, index: int, outcome: dict, tally: engine.Tally, items: list[Item],
                 candidates: list[filters.Candidate] = (), label_updates: list[dict] = ()) -> dict:
    outcome.update({"malformed": len(tally.malformed), "requests": tally.requests, "retries": tally.retries,
                    "prompt_tokens": tally.prompt_tokens, "completion_tokens": tally.completion_tokens})
    cost = _cost(job, tally.prompt_tokens, tally.completion_tokens)
    try:
        with transaction.atomic():
            batch, _ = GenerationBatch.objects.select_for_update().get_or_create(job=job, index=index)
            if batch.done:
                return batch.outcome
            if label_updates:
                outcome = _apply_label_updates(job=job, index=index, outcome=outcome, updates=label_updates)
            _store_items(job=job, items=items, candidates=candidates)
            row = GenerationJob.objects.select_for_update().only("filtered_by_reason", "failed_by_reason").get(
                pk=job.pk)
            changes = dict(
                produced=F("produced") + outcome["produced"], filtered=F("filtered") + outcome["filtered"],
                failed=F("failed") + outcome["failed"], parsed=F("parsed") + outcome["parsed"],
                malformed=F("malformed") + outcome["malformed"], requests_made=F("requests_made") + tally.requests,
                retries=F("retries") + tally.retries, batches_done=F("batches_done") + 1,
                prompt_tokens=F("prompt_tokens") + tally.prompt_tokens,
                completion_tokens=F("completion_tokens") + tally.completion_tokens,
                filtered_by_reason=dict(Counter(row.filtered_by_reason) + Counter(outcome["filtered_by_reason"])),
                failed_by_reason=dict(Counter(row.failed_by_reason) + Counter(outcome["failed_by_reason"])),
            )
            if cost is not None:
                changes["cost_usd"] = Coalesce(F("cost_usd"), Decimal(0)) + cost
            GenerationJob.objects.filter(pk=job.pk).update(**changes)
            _batch_events(job, index, outcome, tally)
            batch.done = True
            batch.outcome = outcome
            batch.save(update_fields=["done", "outcome"])
    except IntegrityError:
        # Another worker stored this batch (same GenerationBatch or idempotency keys) between our check and now.
        stored = GenerationBatch.objects.filter(job=job, index=index, done=True).values_list("outcome",
                                                                                             flat=True).first()
        if stored is None:
            raise
        return stored
    return outcome


def _store_items(*, job: GenerationJob, items: list[Item], candidates) -> None:
    if not items:
        return
    Item.objects.bulk_create(items)
    keys = []
    reviews = []
    for item, candidate in zip(items, candidates):
        if item.status == Status.FILTERED:
            # Born filtered: the audit log says why, like any other status decision.
            reviews.append(Review(item=item, project_id=item.project_id, action=ReviewAction.FILTER, before={},
                                  after=item_snapshot(item), reason=candidate.reason[:32], note=candidate.detail))
        else:
            keys += [NearDuplicateKey(project_id=item.project_id, item_id=item.pk, band=b) for b in candidate.bands]
    Review.objects.bulk_create(reviews)
    NearDuplicateKey.objects.bulk_create(keys, ignore_conflicts=True)


def _batch_events(job: GenerationJob, index: int, outcome: dict, tally: engine.Tally) -> None:
    events = [JobEvent(job=job, kind="batch", message=(
        f"batch {index + 1}/{job.batches_total}: {outcome['produced']} produced, {outcome['filtered']} filtered, "
        f"{outcome['failed']} failed"), data={k: v for k, v in outcome.items() if k not in ("avoid", "items")})]
    for m in tally.malformed[:MALFORMED_EVENTS_PER_BATCH]:
        events.append(JobEvent(job=job, kind="malformed", message=f"batch {index + 1}: {m['detail']}",
                               data={"batch": index, **m}))
    if tally.errors:
        kinds = Counter(e["kind"] for e in tally.errors)
        events.append(JobEvent(job=job, kind="error", message=f"batch {index + 1}: " + ", ".join(
            f"{n} x {kind}" for kind, n in kinds.items()), data={"batch": index, "errors": tally.errors[:10]}))
    JobEvent.objects.bulk_create(events)


# ---------------------------------------------------------------------------------------------------------------------
# Labelling a pool


def _label_batch(*, job: GenerationJob, index: int, provider: Provider) -> dict:
    size = job.config["requests_per_batch"]
    ids = job.config["item_ids"][index * size:(index + 1) * size]
    texts = dict(Item.objects.filter(pk__in=ids, status__in=LABELLABLE).values_list("id", "text"))
    outcomes = engine.run_labelling(provider=provider, config=job.config,
                                    items=[(pk, texts[pk]) for pk in ids if pk in texts])
    tally = engine.Tally()
    failed: Counter[str] = Counter({"no_longer_pending": len(ids) - len(texts)} if len(ids) > len(texts) else {})
    updates = []
    for o in outcomes:
        tally.merge(o.tally)
        if o.labels:
            updates.append({"item_id": o.item_id, "labels": o.labels, "confidence": o.confidence, "votes": o.votes,
                            "provenance": {"job": job.id, "batch": index, "method": o.method,
                                           "provider": provider.name, **o.provenance}})
        else:
            failed[o.failure or "abstained"] += 1
    outcome = {"requested": len(ids), "produced": 0, "filtered": 0, "failed": sum(failed.values()),
               "parsed": len(updates), "filtered_by_reason": {}, "failed_by_reason": dict(failed)}
    return _store_batch(job=job, index=index, outcome=outcome, tally=tally, items=[], label_updates=updates)


def _apply_label_updates(*, job: GenerationJob, index: int, outcome: dict, updates: list[dict]) -> dict:
    """Write proposed labels onto pool items still pending; an item decided meanwhile is left alone and counted."""
    provenance = dict(Item.objects.filter(pk__in=[u["item_id"] for u in updates]).values_list("id", "provenance"))
    labelled, skipped = [], 0
    for u in updates:
        merged = {**(provenance.get(u["item_id"]) or {}), "labelling": u["provenance"]}
        changed = Item.objects.filter(pk=u["item_id"], status__in=LABELLABLE).update(
            proposed_labels=u["labels"], llm_confidence=u["confidence"], llm_votes=u["votes"], provenance=merged,
            version=F("version") + 1, updated_at=timezone.now(),
        )
        if changed:
            labelled.append({"item": u["item_id"], "labels": u["labels"], "confidence": u["confidence"]})
        else:
            skipped += 1
    failed_by_reason = dict(outcome["failed_by_reason"])
    if skipped:
        failed_by_reason["no_longer_pending"] = failed_by_reason.get("no_longer_pending", 0) + skipped
    JobEvent.objects.create(job=job, kind="labelled", message=f"batch {index + 1}: {len(labelled)} items labelled",
                            data={"batch": index, "items": labelled})
    return {**outcome, "produced": len(labelled), "failed": outcome["failed"] + skipped,
            "failed_by_reason": failed_by_reason}
