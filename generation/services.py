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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import DecimalField, Exists, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from annotation.events import event_publish
from annotation.items.services import ItemChange, ServiceError, items_change, items_log_created
from annotation.models import (
    AttributeDimension,
    Item,
    Label,
    Project,
    ReviewAction,
    Source,
    Status,
)
from annotation.selection import selection_request_round
from generation import connections, engine, filters, outcomes, prompts
from generation.config import JobConfig, JobConfigError, JobOptions, options_validate
from generation.endpoints import OPENAI_HOST
from generation.models import (
    GenerationBatch,
    GenerationJob,
    JobEvent,
    JobMode,
    JobStatus,
    LLMConnection,
    NearDuplicateKey,
)
from generation.probe import capabilities_from
from generation.providers import PROVIDERS, Provider, ProviderConfigError, provider_for, provider_spec

MAX_CELLS = 2000
# More values than this in one dimension cannot be covered evenly by a job of any sensible size.
MAX_VALUES_PER_DIMENSION = 200
MAX_POOL_ITEMS = 20000
EXEMPLAR_POOL_PER_LABEL = 200
MALFORMED_EVENTS_PER_BATCH = 5
# The latest error events read for the examples an outcome sentence quotes.
FAILURE_EXAMPLE_EVENTS = 200
LABELLABLE = (Status.PROPOSED, Status.NEEDS_REVIEW)
_IN_CHUNK = 500  # parameters per IN (...) query; SQLite builds may cap a statement at 999


# ---------------------------------------------------------------------------------------------------------------------
# Creating a job


def task_spec(*, project: Project) -> prompts.TaskSpec:
    labels = Label.objects.filter(project=project).order_by("order", "id")
    return prompts.TaskSpec(
        task=project.description,
        multi_label=project.multi_label,
        labels=tuple(prompts.LabelInfo(l.name, l.description, tuple(l.label_words or [])) for l in labels),
    )


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


def attribute_values(*, project: Project, labels: list[str]) -> dict[str, tuple[str, ...]]:
    """The project's attribute dimensions with values, refused before their cross-product with the labels is built
    if a dimension has too many values or the product too many cells."""
    dims = {d.name: d.values for d in AttributeDimension.objects.filter(project=project).order_by("order", "id")
            if d.values}
    if not dims:
        raise ServiceError("Attribute-conditioned generation needs at least one attribute dimension with values.")
    too_many = [f"Attribute dimension '{name}' has {len(values):,} values; at most {MAX_VALUES_PER_DIMENSION} can be "
                f"used in a job." for name, values in dims.items() if len(values) > MAX_VALUES_PER_DIMENSION]
    if too_many:
        raise ServiceError(" ".join(too_many))
    cells = engine.cell_count(labels, dims)
    if cells > MAX_CELLS:
        sizes = " x ".join(str(len(values)) for values in dims.values())
        raise ServiceError(f"The label x attribute cross-product is too large: {len(labels)} labels x {sizes} values "
                           f"= {cells:,} cells; the limit is {MAX_CELLS:,}.")
    return {name: tuple(str(v) for v in values) for name, values in dims.items()}


def job_config(*, project: Project, mode: str, provider: str, options: JobOptions | Mapping,
               connection: LLMConnection | None = None) -> tuple[JobConfig, int]:
    """The job's full, frozen configuration and its requested count; raises ServiceError naming the problem. Options
    are checked against what a probe found the connection's endpoint does, when it has been probed."""
    llm = provider_spec(provider).capabilities.is_llm if provider in PROVIDERS else False
    endpoint = connections.endpoint_of(connection)
    probed = connections.probed_capabilities(endpoint=endpoint)[0] if llm else None
    chosen = options_validate(mode=mode, provider=provider, options=options, capabilities=probed,
                              endpoint_name=endpoint.name)
    spec = task_spec(project=project)
    if not spec.labels:
        raise ServiceError("The project has no labels yet; add labels before generating.")
    labels = [name for name in chosen.labels or spec.label_names if name in spec.label_names]
    if not labels:
        raise ServiceError("Choose at least one of the project's labels.")
    read = {"spec": spec, "labels": labels, "connection": connections.connection_ref(connection) if llm else None}
    if mode == JobMode.LABEL_POOL:
        read["item_ids"] = labelling_pool(project=project, limit=min(chosen.count, MAX_POOL_ITEMS))
        if not read["item_ids"]:
            raise ServiceError("No pool items wait for a label (pending items with no proposed label).")
        requested = len(read["item_ids"])
    else:
        if mode == JobMode.ATTRIBUTE_CONDITIONED:
            read["attributes"] = attribute_values(project=project, labels=labels)
        read["baseline"] = project_label_counts(project=project) if chosen.balance_project else {}
        requested = chosen.count
    return JobConfig(**chosen.model_dump(exclude={"count", "labels"}), **read), requested


def job_create(*, project: Project, user, mode: str, provider: str, model_name: str = "",
               options: JobOptions | Mapping, connection: LLMConnection | None = None, enqueue: bool = True,
               run_now: bool = False) -> GenerationJob:
    """Create a job from the lead's options (``JobOptions``, or a mapping of its fields) on ``connection`` (None: the
    deployment's default) and queue it once the transaction commits; ``run_now`` runs it in this process instead (the
    demo's offline labelling, management commands). This is the one function other apps call."""
    from generation import tasks  # tasks imports this module

    config, requested = job_config(project=project, mode=mode, provider=provider, options=options,
                                   connection=connection)
    size = engine.batch_size(config, labelling=mode == JobMode.LABEL_POOL)
    spec = provider_spec(provider)
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project, created_by=user, mode=mode, provider=provider,
            connection=connection if spec.capabilities.is_llm else None,
            model_name=spec.job_model(model_name, connections.endpoint_of(connection)), config=config.dump(),
            requested=requested,
            batches_total=math.ceil(requested / size),
        )
        _event(job, "created", f"{job.get_mode_display()}: {requested} requested in {job.batches_total} batches")
        if enqueue and not run_now:
            tasks.job_run.delay_on_commit(job.id)
    if run_now:
        job = job_run(job_id=job.id, token=f"inline-{job.id}")
    return job


def job_preview(*, project: Project, mode: str, provider: str, options: JobOptions | Mapping,
                model_name: str = "", connection: LLMConnection | None = None) -> list[dict]:
    """The exact messages of the job's first request (for labelling: the first pool item); the model name and the
    connection do not change them."""
    config, requested = job_config(project=project, mode=mode, provider=provider, options=options,
                                   connection=connection)
    templates = prompts.templates_with_defaults(config.templates)
    if mode == JobMode.LABEL_POOL:
        text = Item.objects.filter(pk=config.item_ids[0]).values_list("text", flat=True).first() or ""
        return prompts.labelling_messages(config.spec, templates, text=text)
    plan = engine.plan_generation_batch(config=config, batch_index=0, requested=requested,
                                        produced_by_cell={}, avoid_by_cell={},
                                        exemplar_pool=exemplar_pool(project=project, labels=config.labels))[0]
    return prompts.generation_messages(config.spec, templates, label=plan.target, count=plan.k,
                                       attributes=plan.attributes, exemplars=plan.exemplar_texts)


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
        job.refresh_from_db()
        event_publish(project_id=job.project_id, event="job.finished", data=_finished_event(job))
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
        config = JobConfig.load(job.config)
        provider = provider or _job_provider(job=job, config=config)
        # "auto" becomes the best format the endpoint supports; the provider still steps down if the server refuses.
        config = config.model_copy(update={"response_format": engine.response_mode(config, provider.capabilities)})
        _record_endpoint(job=job, config=config, provider=provider)
    except (JobConfigError, ProviderConfigError) as exc:
        return _finish(job, JobStatus.FAILED, str(exc))
    near_dup_index_sync(project=job.project)
    try:
        if job.mode == JobMode.LABEL_POOL:
            finished = _run_labelling_batches(job=job, config=config, provider=provider)
        else:
            finished = _run_generation_batches(job=job, config=config, provider=provider,
                                               exemplars=exemplar_pool(project=job.project, labels=config.labels))
    except (OperationalError, InterfaceError):
        raise  # the database is away: the task retries and resumes at the first batch not yet stored
    except Exception as exc:
        # Bad model output never gets here (it is counted); this is a bug or an outage, so it must be visible.
        _finish(job, JobStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500], provider=provider)
        raise
    failed, sentence = _job_outcome(job)
    if not finished:
        return _finish(job, JobStatus.CANCELLED, f"Cancelled between batches. {sentence}", provider=provider)
    return _finish(job, JobStatus.FAILED if failed else JobStatus.SUCCEEDED, sentence, provider=provider)


def _job_provider(*, job: GenerationJob, config: JobConfig) -> Provider:
    """The provider for the job's endpoint, with what a probe found the endpoint does. A project connection that was
    never probed is probed first; one whose probe could not reach it fails the job with the probe's reason."""
    spec = provider_spec(job.provider)
    if not spec.capabilities.is_llm:
        return provider_for(name=job.provider)
    endpoint = connections.job_endpoint(config.connection)
    capabilities, probe = connections.probed_capabilities(endpoint=endpoint)
    if probe is None or not probe.profile:
        if endpoint.connection_id is not None:
            _event(job, "probe", f"Testing {endpoint.name} ({endpoint.describe()}) first: it was never probed.")
            probe = connections.probe_run(endpoint=endpoint)
            capabilities = capabilities_from(probe.profile) if probe else None
    if probe is not None and probe.profile and not probe.profile.get("reachable"):
        raise ProviderConfigError(f"{endpoint.name}: {probe.profile.get('error')}")
    return provider_for(name=job.provider, endpoint=endpoint, model=job.model_name,
                        max_concurrency=config.max_concurrency, capabilities=capabilities)


def _record_endpoint(*, job: GenerationJob, config: JobConfig, provider: Provider) -> None:
    """What the job asks of its endpoint, for its page: the format, the cap field, n, logprobs and concurrency."""
    caps = provider.capabilities
    if not caps.is_llm:
        return
    endpoint = connections.job_endpoint(config.connection)
    capabilities, probe = connections.probed_capabilities(endpoint=endpoint)
    record = {"connection": endpoint.name, "url": endpoint.base_url or OPENAI_HOST, "model": provider.model,
              "probed": probe.finished_at.isoformat() if capabilities and probe and probe.finished_at else "",
              "format": config.response_format, "cap_field": caps.token_cap_field or "", "n": caps.n,
              "logprobs": caps.logprobs, "concurrency": provider.max_concurrency, "adaptations": []}
    GenerationJob.objects.filter(pk=job.pk).update(endpoint=record)


def _failure_examples(job: GenerationJob) -> dict[str, dict]:
    """One example (status, message, refused parameter) of each failure kind, from the job's latest errors."""
    examples: dict[str, dict] = {}
    rows = (JobEvent.objects.filter(job=job, kind__in=("error", "malformed")).order_by("-id")
            .values_list("kind", "data")[:FAILURE_EXAMPLE_EVENTS])
    for kind, data in rows:
        if kind == "malformed":
            examples.setdefault("malformed", {"message": data.get("detail", "")})
        for error in data.get("errors", ()):
            examples.setdefault(error.get("kind", ""), error)
    return examples


def _job_outcome(job: GenerationJob) -> tuple[bool, str]:
    job.refresh_from_db()
    return outcomes.job_outcome(labelling=job.mode == JobMode.LABEL_POOL, requested=job.requested,
                                produced=job.produced, filtered=job.filtered, failed_by_reason=job.failed_by_reason,
                                examples=_failure_examples(job))


def _cancel_requested(job: GenerationJob) -> bool:
    return GenerationJob.objects.filter(pk=job.pk, cancel_requested=True).exists()


def _run_labelling_batches(*, job: GenerationJob, config: JobConfig, provider: Provider) -> bool:
    for index in range(job.batches_total):
        if _cancel_requested(job):
            return False
        _run_batch(job=job, config=config, index=index, provider=provider)
    return True


def _run_generation_batches(*, job: GenerationJob, config: JobConfig, provider: Provider,
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
            plans = _plan_generation(job=job, config=config, index=index, exemplars=exemplars,
                                     pending=in_flight[1] if in_flight else ())
            previous = in_flight
            previous_outcomes = previous[2].result() if previous else None
            in_flight = (index, plans, ahead.submit(engine.run_generation, provider=provider, config=config,
                                                    plans=plans, seed_key=f"job{job.id}:b{index}"))
            if previous:
                _store_generation(job=job, config=config, index=previous[0], provider=provider, plans=previous[1],
                                  outcomes=previous_outcomes)
        if in_flight:
            _store_generation(job=job, config=config, index=in_flight[0], provider=provider, plans=in_flight[1],
                              outcomes=in_flight[2].result())
    return not cancelled


def _finish(job: GenerationJob, status: str, message: str, provider: Provider | None = None) -> GenerationJob:
    """End a running job with ``message`` as its one-sentence outcome; what the provider had to adapt to on the way
    is added to the job's endpoint record and log."""
    changes = {"status": status, "finished_at": timezone.now(), "outcome": message[:1000]}
    adaptations = list(provider.adaptations) if provider is not None else []
    if adaptations:
        record = GenerationJob.objects.filter(pk=job.pk).values_list("endpoint", flat=True).first() or {}
        changes["endpoint"] = {**record, "adaptations": adaptations}
    finished = GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(**changes)
    job.refresh_from_db()
    if finished:
        JobEvent.objects.bulk_create([JobEvent(job=job, kind="adapted", message=a[:2000]) for a in adaptations])
        event_publish(project_id=job.project_id, event="job.finished", data=_finished_event(job))
    _event(job, status, message, {"produced": job.produced, "filtered": job.filtered, "failed": job.failed,
                                  "requested": job.requested})
    if finished and job.produced:
        # New items wait as ``proposed`` (labelled pool items keep their status but have new LLM labels): a scoring
        # round routes them to review or auto-accept; one round at a time is queued per project, however many jobs end.
        selection_request_round(job.project_id, force=True)
    return job


def _finished_event(job: GenerationJob) -> dict:
    """What ``job.finished`` announces (annotation/events.py)."""
    return {"job": job.pk, "mode": job.mode, "status": job.status, "requested": job.requested,
            "produced": job.produced, "filtered": job.filtered, "failed": job.failed, "outcome": job.outcome,
            "finished_at": job.finished_at}


def job_run_batch(*, job: GenerationJob, index: int, provider: Provider) -> dict:
    """Run batch ``index`` and store it; running it again returns the stored outcome and changes nothing."""
    return _run_batch(job=job, config=JobConfig.load(job.config), index=index, provider=provider)


def _run_batch(*, job: GenerationJob, config: JobConfig, index: int, provider: Provider) -> dict:
    stored = GenerationBatch.objects.filter(job=job, index=index, done=True).values_list("outcome", flat=True).first()
    if stored is not None:
        return stored
    if job.mode == JobMode.LABEL_POOL:
        return _label_batch(job=job, config=config, index=index, provider=provider)
    return _generation_batch(job=job, config=config, index=index, provider=provider,
                             exemplars=exemplar_pool(project=job.project, labels=config.labels))


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


def _cost(config: JobConfig, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    if config.price_prompt_per_1k is None and config.price_completion_per_1k is None:
        return None
    return (prompt_tokens * (config.price_prompt_per_1k or Decimal(0))
            + completion_tokens * (config.price_completion_per_1k or Decimal(0))) / 1000


def _plan_generation(*, job: GenerationJob, config: JobConfig, index: int,
                     exemplars: dict[str, list[tuple[int, str]]],
                     pending: list[engine.RequestPlan] = ()) -> list[engine.RequestPlan]:
    """Plan batch ``index`` from what earlier batches stored, counting a batch still on the network (``pending``)
    as if it had delivered what it asked for, so overlapping batches do not all chase the same cells."""
    produced_by_cell, avoid_by_cell = _earlier_outcomes(job, index)
    for plan in pending:
        produced_by_cell[plan.cell] = produced_by_cell.get(plan.cell, 0) + plan.k
    return engine.plan_generation_batch(config=config, batch_index=index, requested=job.requested,
                                        produced_by_cell=produced_by_cell, avoid_by_cell=avoid_by_cell,
                                        exemplar_pool=exemplars)


def _generation_batch(*, job: GenerationJob, config: JobConfig, index: int, provider: Provider,
                      exemplars: dict[str, list[tuple[int, str]]]) -> dict:
    plans = _plan_generation(job=job, config=config, index=index, exemplars=exemplars)
    outcomes = engine.run_generation(provider=provider, config=config, plans=plans,
                                     seed_key=f"job{job.id}:b{index}")
    return _store_generation(job=job, config=config, index=index, provider=provider, plans=plans, outcomes=outcomes)


def _store_generation(*, job: GenerationJob, config: JobConfig, index: int, provider: Provider,
                      plans: list[engine.RequestPlan], outcomes: list[engine.RequestOutcome]) -> dict:
    samples = [s for o in outcomes for s in o.samples]
    candidates = [filters.Candidate(text=s.text, exemplars=s.plan.exemplar_texts) for s in samples]
    filters.apply_filters(candidates, settings=filters.FilterSettings.from_config(config.filters.model_dump()),
                          index=_ProjectIndex(job.project_id))
    tally = engine.Tally()
    failed: Counter[str] = Counter()
    for o in outcomes:
        tally.merge(o.tally)
        failed.update(o.failed)
    source = Source.LLM if provider.capabilities.is_llm else Source.AUGMENT
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
    return _store_batch(job=job, config=config, index=index, outcome=outcome, tally=tally, items=items,
                        candidates=candidates)


def _store_batch(*, job: GenerationJob, config: JobConfig, index: int, outcome: dict, tally: engine.Tally,
                 items: list[Item], candidates: list[filters.Candidate] = (), label_updates: list[dict] = ()) -> dict:
    outcome.update({"malformed": len(tally.malformed), "requests": tally.requests, "retries": tally.retries,
                    "prompt_tokens": tally.prompt_tokens, "completion_tokens": tally.completion_tokens})
    cost = _cost(config, tally.prompt_tokens, tally.completion_tokens)
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
                cap = Value(GenerationJob.COST_CAP, output_field=DecimalField())
                changes["cost_usd"] = Least(Coalesce(F("cost_usd"), Decimal(0)) + cost, cap)
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
    filtered = []
    for item, candidate in zip(items, candidates):
        if item.status == Status.FILTERED:
            filtered.append((item, candidate.reason, candidate.detail))
        else:
            keys += [NearDuplicateKey(project_id=item.project_id, item_id=item.pk, band=b) for b in candidate.bands]
    # Born filtered: the audit log says why, like any other status decision.
    items_log_created(action=ReviewAction.FILTER, entries=filtered)
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


def _label_batch(*, job: GenerationJob, config: JobConfig, index: int, provider: Provider) -> dict:
    size = config.requests_per_batch
    ids = config.item_ids[index * size:(index + 1) * size]
    texts = dict(Item.objects.filter(pk__in=ids, status__in=LABELLABLE).values_list("id", "text"))
    outcomes = engine.run_labelling(provider=provider, config=config,
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
    return _store_batch(job=job, config=config, index=index, outcome=outcome, tally=tally, items=[],
                        label_updates=updates)


def _apply_label_updates(*, job: GenerationJob, index: int, outcome: dict, updates: list[dict]) -> dict:
    """Write proposed labels onto pool items still pending, each with an ``llm_label`` Review row; an item decided
    meanwhile is left alone and counted."""
    by_item = {u["item_id"]: u for u in updates}

    def label(item: Item) -> ItemChange | None:
        if item.status not in LABELLABLE:
            return None
        u = by_item[item.pk]
        return ItemChange(action=ReviewAction.LLM_LABEL, proposed_labels=u["labels"],
                          note=f"labelling job {job.id}, batch {index + 1}",
                          fields={"llm_confidence": u["confidence"], "llm_votes": u["votes"],
                                  "provenance": {**(item.provenance or {}), "labelling": u["provenance"]}})

    changed = {item.pk for item in items_change(project_id=job.project_id, item_ids=by_item, decide=label,
                                                read=("provenance",))}
    labelled = [{"item": u["item_id"], "labels": u["labels"], "confidence": u["confidence"]}
                for u in updates if u["item_id"] in changed]
    skipped = len(updates) - len(labelled)
    failed_by_reason = dict(outcome["failed_by_reason"])
    if skipped:
        failed_by_reason["no_longer_pending"] = failed_by_reason.get("no_longer_pending", 0) + skipped
    JobEvent.objects.create(job=job, kind="labelled", message=f"batch {index + 1}: {len(labelled)} items labelled",
                            data={"batch": index, "items": labelled})
    return {**outcome, "produced": len(labelled), "failed": outcome["failed"] + skipped,
            "failed_by_reason": failed_by_reason}
