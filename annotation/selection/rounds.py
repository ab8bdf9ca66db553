"""Scoring rounds: train, rescore every open item, re-route it by the project's policy, and record the round.

One round per project at a time: a round is claimed inside a transaction that locks the project row (PostgreSQL) or
holds SQLite's write lock (IMMEDIATE transactions), checks that no round is running and creates the ``ScoringRound``
row. A round that gave no sign of life for ``ROUND_STALE_AFTER`` (``ScoringRound.progress_at``) is taken for dead (its
worker was killed) and marked failed, its stored model dropped.

Routing, for each item that is not final (proposed, needs_review, auto_accepted), in three phases that
``calibration`` computes the numbers for (read its docstring) and ``Project.routing_state`` records for the pages:

- no LLM label (abstained) -> review, always, in every phase;
- calibrating: each cohort (``cohort_of``: every labelling or generation job, which fixes LLM, prompt and model, and
  the labels that came with imports) is calibrated on its own. While a cohort has no complete calibration sample, a
  round draws one (its size from ``target_accuracy``, stratified by ambiguity, seeded by the project id) from its open
  LLM-labelled items, flags them ``is_calibration`` and sends them to review. None of its items is auto-accepted and
  nothing else of it moves until a person decided every flagged item (the review queue then asks for a round at once).
  Items that join a calibrated cohort later (another import) get their share of the sample and wait for it, the
  cohort's older items routing as before (``_calibration_marks``);
- unreliable: once calibrated, if even the least ambiguous items' error rate is above what the target allows
  (``llm_unreliable``), nothing is auto-accepted and every open LLM-labelled item goes to people, the auto-accepted
  ones included (their auto-accept withdrawn, a Review row each);
- otherwise ``target_fill`` says how many of the least ambiguous candidates may be auto-accepted with the dataset's
  95% lower bound at or above the target. Target mode (the default) auto-accepts exactly those and sends the rest to
  review. Budget mode (the most ambiguous open items, as many as keep human-reviewed plus queued items at
  ``review_budget`` of all items) and threshold mode (ambiguity >= ``review_threshold``) choose the review set as
  before, but auto-accept only inside the target's set: the others wait where they are (auto-accepted ones go back to
  review). A stable pseudo-random share ``audit_rate`` of would-be auto-accepts (a hash of project and item, so the
  sample does not grow round after round) goes to review instead, flagged ``is_audit``; while auto-accept is paused,
  would-be auto-accepts stay where they are;
- ``review_cap``: moves to review stop where decided plus queued items would pass it (most ambiguous first); the rest
  wait, and the state says the target cannot be certified within the cap.

After the writes, the certificate: phase "reached" when calibration is complete, nothing waits (proposed or in
review) and ``dataset_bound`` over the auto-accepted items as they now stand is at or above the target; else "not_yet"
with the number of items still waiting. Every round recomputes it, so reviews that find errors shrink the plan, send
items back and take the certificate away.

An item is moved only if nobody holds it: items claimed by a reviewer, already reviewed once, or waiting as audits keep
their status (their scores are still refreshed). Moves go through ``annotation.items.services.items_change``, which
bumps the version and logs a Review row (``route`` or ``auto_accept``); unchanged items get new scores only, with no
Review row and no version bump (so a reviewer's open form does not go stale). Writes go in batches, each re-reading
the rows' versions and claims under lock so a review that happened while the model trained is never overwritten.
"""
import functools
import json
import math
from array import array
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Max, OuterRef, Q, Subquery, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.events import event_publish
from annotation.items.services import ItemChange, items_apply_overlap, items_change
from annotation.models import (
    FINAL_STATUSES,
    HUMAN_DECISIONS,
    RANDOM_CHECK,
    Item,
    Project,
    Review,
    ReviewAction,
    RoutingMode,
    ScoringRound,
    Status,
)
from annotation.selection import scoring
from annotation.selection.calibration import (
    Checks,
    calibration_draw,
    calibration_size,
    dataset_bound,
    error_model_fit,
    llm_unreliable,
    region_zones,
    target_fill,
)
from annotation.selection.estimates import exact_interval
from annotation.selection.features import featurize
from synthstudio.lib.draws import stable_draw
from synthstudio.lib.prepared import Prepared
from synthstudio.lib.sql import rows_write

ROUND_STALE_AFTER = timedelta(hours=1)
ROUND_REQUEST_STALE_AFTER = timedelta(minutes=15)
WRITE_BATCH = 2000
OPEN_STATUSES = (Status.PROPOSED, Status.NEEDS_REVIEW, Status.AUTO_ACCEPTED)
CALIBRATION_WAIT = "waiting: nothing is auto-accepted until the calibration sample is reviewed ({done} of {size} done)"
WITHDRAWN = "to review: auto-accept withdrawn, the LLM's labels are unreliable on this project"


IMPORTED_COHORT = "import"
# The fields ``cohort_of`` reads, for values_list.
COHORT_FIELDS = ("generation_job_id", "provenance__labelling__job")


def cohort_of(generation_job_id: int | None, labelling_job: object) -> str:
    """Which LLM, prompt and model gave an item its label: each generation or labelling job is its own cohort (a job
    fixes provider, model and prompt), and labels that came in with an import are one cohort. A cohort is calibrated
    on its own before any of its items is auto-accepted, and its own checks bound its share of the dataset."""
    if isinstance(labelling_job, int) or (isinstance(labelling_job, str) and labelling_job.isdigit()):
        return f"job:{int(labelling_job)}"
    if generation_job_id is not None:
        return f"job:{generation_job_id}"
    return IMPORTED_COHORT


def cohort_name(cohort: str) -> str:
    return "imported labels" if cohort == IMPORTED_COHORT else f"job #{cohort.split(':', 1)[1]}"


def label_class(labels: list[str]) -> str | None:
    """One class per label set (label powerset for multi-label projects); None for no label."""
    return "|".join(sorted(labels)) if labels else None


def audit_draw(project: Project, item_id: int) -> float:
    """A uniform number in [0, 1) fixed per project and item: the item is audited when it falls under audit_rate."""
    return stable_draw(_audit_salt(project.pk, project.created_at), item_id)


@functools.lru_cache(maxsize=64)
def _audit_salt(project_id: int, created_at) -> str:
    """The draw's first two parts, joined as ``stable_draw`` joins them, once per project (a round draws up to a
    million times)."""
    return f"{project_id}:{created_at.isoformat()}"


def values_by_id(ids: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``values`` (floats, one per id of ``ids``, in any order) looked up for each id of ``wanted``; NaN where an id
    is missing. Arrays and a binary search: a million lookups without a dict of Python objects."""
    out = np.full(len(wanted), np.nan)
    if len(ids) and len(wanted):
        order = np.argsort(ids, kind="stable")
        ids, values = ids[order], values[order]
        at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
        found = ids[at] == wanted
        out[found] = values[at[found]]
    return out


@dataclass(slots=True)
class _Row:
    id: int
    status: str
    version: int
    proposed: str | None
    human: str | None
    llm_confidence: float | None
    is_audit: bool
    is_calibration: bool
    busy: bool  # held by a reviewer, or reviewed at least once: its status is left alone
    cohort: str = IMPORTED_COHORT  # who gave the LLM label (``cohort_of``)
    ambiguity: float | None = None  # as the row shows it (read by a chunk, which rewrites only what changes)
    model_label: str = ""
    shown: tuple = ("", None)  # the reason and the round the row shows (a chunked round's chunks)


@dataclass
class RoutingCounts:
    to_review: int = 0
    to_auto_accept: int = 0
    audits: int = 0
    back_to_review: int = 0
    unchanged: int = 0
    skipped_changed: int = 0
    held: int = 0
    reasons: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # what the round decided, for Project.routing_state


def selection_run_round(*, project: Project, trigger: str = "manual", fan_out: bool = False) -> ScoringRound | None:
    """Run one round for the project; None if another round is running. Failures are recorded on the round.

    A project with more open items than ``SELECTION_TRAIN_SIZE`` gets a chunked round (``chunks``): with ``fan_out``
    (the Celery task) its chunks go to the workers and this returns the round still running, its last chunk routing
    the project; without (commands, benchmarks, tests) the chunks and the routing run here, one after the other.
    """
    from annotation.selection import chunks

    scoring_round = _claim_round(project=project, trigger=trigger)
    if scoring_round is None:
        return None
    phase_before = _routing_phase(project.pk)
    scoring_round.metrics["phase_before"] = phase_before
    try:
        project.refresh_from_db()  # the policy as it is now, not as the caller loaded it
        rows, texts = _load_rows(project, texts=False)
        if len(rows) > settings.SELECTION_TRAIN_SIZE:
            del texts
            chunked = chunks.round_train(project=project, scoring_round=scoring_round, rows=rows)
            del rows
            if chunked:
                return chunks.round_continue(scoring_round=scoring_round, fan_out=fan_out)
        else:
            texts = _texts(project, rows)
            _run(project=project, scoring_round=scoring_round, rows=rows, texts=texts)
    except Exception as exc:
        round_fail(scoring_round=scoring_round, exc=exc)
        raise
    return round_finish(project=project, scoring_round=scoring_round)


class RoundLost(Exception):
    """A round that stopped reporting: its worker was lost."""


def round_fail(*, scoring_round: ScoringRound, exc: BaseException) -> None:
    """Record the round as failed, with the error, and drop its stored model."""
    error = str(exc) if isinstance(exc, RoundLost) else f"{type(exc).__name__}: {exc}"
    ScoringRound.objects.filter(pk=scoring_round.pk).update(
        state=ScoringRound.State.FAILED, stage=ScoringRound.Stage.NONE, error=error[:2000],
        finished_at=timezone.now(), duration_s=(timezone.now() - scoring_round.started_at).total_seconds(),
    )
    from annotation.models import ScoringModel
    ScoringModel.objects.filter(scoring_round=scoring_round.pk).delete()


def round_finish(*, project: Project, scoring_round: ScoringRound) -> ScoringRound:
    """Mark the round done (its counts and metrics as the caller set them) and announce it."""
    scoring_round.state = ScoringRound.State.DONE
    scoring_round.stage = ScoringRound.Stage.NONE
    scoring_round.finished_at = timezone.now()
    scoring_round.duration_s = (scoring_round.finished_at - scoring_round.started_at).total_seconds()
    phase_before = scoring_round.metrics.pop("phase_before", None)
    scoring_round.save(update_fields=["state", "stage", "finished_at", "duration_s", "training_size", "human_labels",
                                      "items_scored", "metrics"])
    _round_events_publish(project=project, scoring_round=scoring_round, phase_before=phase_before)
    return scoring_round


# --- Events (issue 15: webhooks; annotation/events.py) -----------------------------------------------------------------

def _routing_phase(project_id: int) -> str | None:
    state = Project.objects.filter(pk=project_id).values_list("routing_state", flat=True).first()
    return (state or {}).get("phase")


def _round_events_publish(*, project: Project, scoring_round: ScoringRound, phase_before: str | None) -> None:
    """Announce the finished round, and the routing state's move into "reached" or "unreliable" (not its staying)."""
    state = Project.objects.filter(pk=project.pk).values_list("routing_state", flat=True).first() or {}
    phase = state.get("phase")
    event_publish(project_id=project.pk, event="round.finished", data={
        "round": scoring_round.pk, "model_version": scoring_round.model_version, "phase": phase,
        "items_scored": scoring_round.items_scored, "routing": scoring_round.metrics.get("routing", {})})
    summary = {"round": scoring_round.pk, "target": state.get("target"), "estimate": state.get("estimate"),
               "lower_bound": state.get("lower_bound"), "reviews": state.get("reviews"), "llm": state.get("llm")}
    if phase != phase_before and phase in ("reached", "unreliable"):
        event_publish(project_id=project.pk, event="target.reached" if phase == "reached" else "llm.unreliable",
                      data=summary)


def _claim_round(*, project: Project, trigger: str) -> ScoringRound | None:
    now = timezone.now()
    with transaction.atomic():
        # The row lock serialises claims per project on PostgreSQL; SQLite's IMMEDIATE transaction already holds the
        # database's write lock here.
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()
        rounds = ScoringRound.objects.filter(project=project)
        # A round is dead when it gave no sign of life (claim, stage, chunk done) for ROUND_STALE_AFTER: a chunked
        # round working through its chunks stays alive however long it runs.
        for dead in rounds.filter(state=ScoringRound.State.RUNNING).annotate(
                alive_at=Coalesce("progress_at", "started_at")).filter(alive_at__lt=now - ROUND_STALE_AFTER):
            round_fail(scoring_round=dead, exc=RoundLost("The round stopped reporting (worker lost); marked failed."))
        if rounds.filter(state=ScoringRound.State.RUNNING).exists():
            return None
        Project.objects.filter(pk=project.pk).update(round_requested_at=None)
        version = (rounds.aggregate(v=Max("model_version"))["v"] or 0) + 1
        last_review_id = Review.objects.filter(project=project).aggregate(m=Max("id"))["m"] or 0
        return ScoringRound.objects.create(
            project=project, model_version=version, progress_at=now,
            metrics={"trigger": trigger, "last_review_id": last_review_id},
        )


def _last_round_select(*, project: int) -> tuple[str, list]:
    last = (
        ScoringRound.objects.filter(project=OuterRef("pk")).exclude(state=ScoringRound.State.FAILED).order_by("-id")
    )
    seen = last.annotate(seen=Cast(KT("metrics__last_review_id"), BigIntegerField())).values("seen")[:1]
    row = (
        Project.objects.filter(pk=project, archived_at__isnull=True)
        .annotate(last_state=Subquery(last.values("state")[:1]), last_seen=Subquery(seen))
        .values_list("last_state", "last_seen", "retrain_every")
        .order_by()[:1]
    )
    return row.query.sql_with_params()


# Every review asks this (selection_maybe_schedule); built once per process (synthstudio/lib/prepared.py).
_LAST_ROUND = Prepared(_last_round_select, ints=("project",))


def _last_round(project_id: int) -> tuple[str | None, int, int | None]:
    """(state of the latest round not failed, the last review id it saw, the project's retrain_every), one query."""
    sql, params = _LAST_ROUND.sql(project=project_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None, 0, None
    state, seen_id, retrain_every = row
    return state, seen_id or 0, retrain_every


def _reviews_since(project_id: int, since: int, *, at_most: int | None = None) -> int:
    # Served by the partial index review_human_decisions; ``at_most`` stops the count early, so the check a review
    # makes costs the same however many reviews the project has.
    reviews = Review.objects.filter(
        id__gt=since, project_id=project_id, action__in=HUMAN_DECISIONS, user__isnull=False
    ).order_by()
    if at_most is not None:
        reviews = reviews[:at_most]
    return reviews.count()


def selection_reviews_since_last_round(*, project: Project) -> int:
    """Human decisions (accept, edit, reject) logged since the latest round that ran or is running started."""
    _, since, _ = _last_round(project.pk)
    return _reviews_since(project.pk, since)


def selection_maybe_schedule(project_id: int) -> bool:
    """Queue a round (after the current transaction commits) once ``retrain_every`` new human reviews exist.

    The review queue calls this after every review. It costs two indexed queries and is safe to call often: a queued
    task re-checks the count and the lock, so extra calls while a round is due or running do nothing.
    """
    if not _due(project_id):
        return False
    return selection_request_round(project_id)


def selection_request_round(project_id: int, *, force: bool = False) -> bool:
    """Queue a round after the current transaction commits, unless one is queued already and has not started.

    ``force`` skips the task's check that enough reviews arrived (new items to route, a lead's "score now"). A request
    older than ROUND_REQUEST_STALE_AFTER is taken as lost (a worker died before starting it) and may be made again.
    A queued round, forced or not, routes every open item when it runs, so a dropped request loses nothing.
    """
    from annotation.selection.tasks import selection_round

    now = timezone.now()
    requested = Project.objects.filter(
        Q(round_requested_at__isnull=True) | Q(round_requested_at__lt=now - ROUND_REQUEST_STALE_AFTER), pk=project_id
    ).update(round_requested_at=now)
    if not requested:
        return False
    selection_round.delay_on_commit(project_id, force=force)
    return True


def selection_round_due(*, project: Project) -> bool:
    return _due(project.pk)


def _due(project_id: int) -> bool:
    # The latest round not failed is the running one if any: a claim marks older running rounds failed first.
    state, since, retrain_every = _last_round(project_id)
    if retrain_every is None or state == ScoringRound.State.RUNNING:
        return False
    needed = max(1, retrain_every)
    return _reviews_since(project_id, since, at_most=needed) >= needed


def _load_rows(project: Project, *, texts: bool = True) -> tuple[list[_Row], list[str]]:
    """The rows a round routes (every live item but filtered and rejected ones), in id order, and their texts when
    asked.

    Label lists and the labelling job come as the database's JSON text, parsed once per distinct value (a million
    rows carry a few label sets): the ORM's per-row JSON decoding was most of the load's time at 100k items. Label
    classes and cohorts are interned, so the rows share a few strings."""
    now = timezone.now()
    rows, found = [], []
    classes: dict = {}

    def label_key(raw: str | None) -> str | None:
        if raw not in classes:
            classes[raw] = label_class(json.loads(raw)) if raw else None
        return classes[raw]

    items = (
        Item.objects.filter(project=project, archived_at__isnull=True)
        .exclude(status__in=(Status.FILTERED, Status.REJECTED))
        .annotate(proposed_raw=Cast("proposed_labels", TextField()), final_raw=Cast("final_labels", TextField()),
                  labelling_job=KT("provenance__labelling__job"))
        .values_list("id", "text" if texts else "id", "status", "version", "proposed_raw", "final_raw",
                     "llm_confidence", "is_audit", "is_calibration", "claimed_by_id", "lease_expires_at",
                     "review_count", "generation_job_id", "labelling_job")
        .order_by("id")
    )
    cohorts: dict = {}
    for (pk, text, status, version, proposed, final, conf, is_audit, calibration, claimed, lease,
         reviews, job, labelling_job) in items.iterator(chunk_size=5000):
        held = claimed is not None and lease is not None and lease >= now
        human = label_key(final) if status == Status.ACCEPTED else None
        key = (job, labelling_job)
        if key not in cohorts:
            cohorts[key] = cohort_of(job, labelling_job)
        row = _Row(id=pk, status=status, version=version, proposed=label_key(proposed), human=human,
                   llm_confidence=conf, is_audit=is_audit, is_calibration=calibration,
                   busy=held or reviews > 0, cohort=cohorts[key])
        rows.append(row)
        if texts:
            found.append(text)
    return rows, found


def _texts(project: Project, rows: list[_Row]) -> list[str]:
    """The texts of ``rows``, in their order (a row deleted meanwhile gets an empty text: it is skipped at writing)."""
    texts = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 5000):
        texts.update(Item.objects.filter(project=project, pk__in=ids[start:start + 5000])
                     .values_list("id", "text").order_by())
    return [texts.get(pk, "") for pk in ids]


def _run(*, project: Project, scoring_round: ScoringRound, rows: list[_Row], texts: list[str]) -> None:
    """A round in one process: train on every labelled row, score every row, route."""
    scores = None
    if rows:
        X = featurize(texts)
        del texts
        scores = scoring.score(
            X,
            llm=[r.proposed for r in rows],
            human=[r.human for r in rows],
            llm_confidence=np.array([np.nan if r.llm_confidence is None else r.llm_confidence for r in rows]),
            checks=np.array([r.is_calibration or r.is_audit for r in rows], dtype=bool),
            # Folds from the item ids and the project: the same round after round (``scoring.fold_splits``).
            keys=np.array([r.id for r in rows], dtype=np.int64),
            seed=project.pk,
        )
    counts = _route(project=project, scoring_round=scoring_round, rows=rows, scores=scores)
    round_record(project=project, scoring_round=scoring_round, rows=rows, scores=scores, counts=counts,
                 training_size=sum(1 for r in rows if r.human is not None or r.proposed is not None),
                 items_scored=len(rows) if scores is not None else 0)


def round_record(*, project: Project, scoring_round: ScoringRound, rows: list[_Row], scores, counts: RoutingCounts,
                 training_size: int, items_scored: int) -> None:
    """Store the routing state and fill in the round's counts and metrics (saved by ``round_finish``). ``scores``:
    the training set's (the rows' own in a one-process round)."""
    if counts.state:
        Project.objects.filter(pk=project.pk).update(routing_state=counts.state)
        project.routing_state = counts.state  # the caller's project reads what was stored, not the state before it
    reviewed = [r for r in rows if r.human is not None and r.proposed is not None]
    scoring_round.training_size = training_size
    scoring_round.human_labels = sum(1 for r in rows if r.human is not None)
    scoring_round.items_scored = items_scored
    scoring_round.metrics.update({
        "features": ("tfidf+embedding" if getattr(settings, "SELECTION_EMBEDDING_MODEL_PATH", "") else "tfidf")
        + (" (hashed)" if settings.SELECTION_FEATURES == "hashing" and scoring_round.chunks else ""),
        "folds": scores.folds if scores else 0,
        "error_model": scores.error_model if scores else False,
        "cv_human_agreement": _rounded(scores.cv_human_agreement) if scores else None,
        "llm_human_agreement": _rounded(sum(r.human == r.proposed for r in reviewed) / len(reviewed))
        if reviewed else None,
        "routing": {k: v for k, v in vars(counts).items() if k not in ("reasons", "state")},
        "note": "" if scores else "Too few labelled items to train (need 10, in at least two labels).",
    })


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _review_set(project: Project, rows: list[_Row], ambiguity: np.ndarray, open_idx: np.ndarray) -> set[int]:
    if project.routing_mode == RoutingMode.THRESHOLD:
        return {int(i) for i in open_idx if ambiguity[i] >= project.review_threshold}
    total = len(rows)
    done = sum(1 for r in rows if r.status in FINAL_STATUSES)
    slots = max(0, math.ceil(project.review_budget * total - 1e-9) - done)
    order = open_idx[np.argsort(-ambiguity[open_idx], kind="stable")]
    return {int(i) for i in order[:slots]}


@dataclass
class _Plan:
    """Where each open item goes this round (index into rows -> status) and why, when the usual reason does not say."""

    targets: dict = field(default_factory=dict)
    audits: set = field(default_factory=set)
    reasons: dict = field(default_factory=dict)
    calibration: set = field(default_factory=set)  # flagged for the calibration sample (new draws included)


def _route(*, project: Project, scoring_round: ScoringRound, rows: list[_Row], scores,
           stored: bool = False) -> RoutingCounts:
    """Plan and write. ``stored``: a chunked round, whose chunks wrote every open row's scores and the reason it would
    have if it stayed where it is; only rows that move or whose flags or reason change are written here, with the
    reason built from the scores the row stores (``scores`` then carries the ambiguity alone)."""
    counts = RoutingCounts()
    open_idx = np.array([i for i, r in enumerate(rows) if r.status in OPEN_STATUSES], dtype=int)
    if scores is None:
        ambiguity = np.array([1.0 if r.proposed is None else np.nan for r in rows])
        plan = _Plan(targets={int(i): Status.NEEDS_REVIEW for i in open_idx if rows[i].proposed is None},
                     calibration={i for i, r in enumerate(rows) if r.is_calibration})
    else:
        ambiguity = scores.ambiguity
        plan = _plan(project=project, rows=rows, ambiguity=ambiguity, open_idx=open_idx, counts=counts)
    model_labels = scores.model_labels if scores and not stored else None
    moves: list[tuple[int, str, dict]] = []
    for i in open_idx:
        row = rows[i]
        if scores is None and i not in plan.targets:
            continue  # nothing to score it with: left as it is
        target = plan.targets.get(i, row.status)
        fields = {
            "is_audit": i in plan.audits or (row.is_audit and row.status == Status.NEEDS_REVIEW),
            "is_calibration": i in plan.calibration,
        }
        if row.busy or (row.is_audit and row.status == Status.NEEDS_REVIEW):
            counts.held += target != row.status
            target = row.status  # a reviewer holds it, or it waits as an audit
        if stored and (target == row.status and fields["is_audit"] == row.is_audit
                       and fields["is_calibration"] == row.is_calibration and target != Status.PROPOSED
                       and i not in plan.reasons):
            counts.unchanged += 1
            continue  # its chunk wrote its scores and this very reason
        moves.append((int(i), target, fields))
    quoted = {i for i, target, _ in moves if not (i in plan.reasons and not (
        target == Status.NEEDS_REVIEW and plan.reasons[i].startswith("waiting")))}
    views = _stored_views([rows[i].id for i, _, _ in moves if i in quoted]) if stored else {}
    updates: list[tuple[_Row, dict, str | None]] = []
    for i, target, fields in moves:
        row = rows[i]
        if not stored:
            fields = {
                "ambiguity": None if np.isnan(ambiguity[i]) else round(float(ambiguity[i]), 6),
                "model_label": (model_labels[i] if model_labels else "")[:100],
                "model_scores": score_signals(scores, i, row) if scores else {},
                "scored_round": scoring_round.model_version,
            } | fields
        if i in plan.reasons and not (target == Status.NEEDS_REVIEW and plan.reasons[i].startswith("waiting")):
            fields["route_reason"] = plan.reasons[i][:200]
        elif target == Status.PROPOSED and project.auto_accept_paused and row.proposed is not None:
            fields["route_reason"] = "auto-accept is paused; waiting for the lead's decision"
        else:
            view = views.get(row.id) if stored else (_view(scores, i) if scores else None)
            fields["route_reason"] = route_reason(row, view, audit=fields["is_audit"],
                                                  to_review=target == Status.NEEDS_REVIEW)
        updates.append((row, fields, target if target != row.status else None))
    _write(project=project, updates=updates, counts=counts, changed_only=stored)
    if scores is not None:
        # A chunked round's rows may show scores up to a step old (they are rewritten when they move by more): the
        # certificate reads this round's own.
        current = (np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows)), ambiguity) if stored else None
        counts.state = _certify(project=project, state=counts.state, current=current) | {
            "version": scoring_round.model_version, "computed_at": timezone.now().isoformat()}
    return counts


def _plan(*, project: Project, rows: list[_Row], ambiguity: np.ndarray, open_idx: np.ndarray,
          counts: RoutingCounts) -> _Plan:
    """Calibrate each cohort first; then auto-accept only what the target allows, never from an unreliable cohort."""
    target_accuracy = project.target_accuracy
    amb = np.nan_to_num(ambiguity, nan=1.0)
    samples = _calibration_samples(project=project)
    # Candidates: open LLM-labelled items the router may move (nobody holds them, no audit waits on them).
    # Index arrays and masks, not sets of Python ints: a million-item project's routing plans in bounded memory.
    candidates = np.fromiter((i for i in open_idx.tolist() if rows[i].proposed is not None and not rows[i].busy
                              and not (rows[i].is_audit and rows[i].status == Status.NEEDS_REVIEW)), dtype=int)
    plan = _Plan(calibration={i for i, r in enumerate(rows) if r.is_calibration})
    candidate_cohorts = np.array([rows[i].cohort for i in candidates.tolist()], dtype=object)
    by_cohort = {cohort: candidates[candidate_cohorts == cohort] for cohort in dict.fromkeys(candidate_cohorts)}
    del candidate_cohorts
    before = (project.routing_state or {}).get("cohorts") or {}
    marks = _calibration_marks(project=project, rows=rows, amb=amb, by_cohort=by_cohort, samples=samples,
                               before=before, plan=plan)
    abstained = [int(i) for i in open_idx if rows[i].proposed is None]
    plan.targets.update({i: Status.NEEDS_REVIEW for i in abstained})
    checks, sampled = _checks(project=project, rows=rows, ambiguity=amb)
    decided = Item.objects.filter(project=project, archived_at__isnull=True, status__in=FINAL_STATUSES).count()
    accepted = sum(1 for r in rows if r.status == Status.ACCEPTED)
    total = _Calibration.total(samples.values())
    # A cohort calibrating: its items wait (its sample goes to people); a cohort whose first sample is complete and
    # whose newer items' share is not: those newer items wait (``_calibration_marks``).
    calibrating = {c: marks[c]["upto"] for c in by_cohort if not samples[c].complete}

    def waits(i: int) -> bool:
        cohort = rows[i].cohort
        return cohort in calibrating and (calibrating[cohort] is None or rows[i].id > calibrating[cohort])

    # The calibration sample's verdict is given once, at the first round after the cohort's sample is complete, and
    # kept (re-judging the same sample under each round's new ranking would be one more look every round); later
    # rounds judge every check, audits included, at the same 99.5% level (calibration.llm_unreliable).
    verdicts = {}
    for c, sample in samples.items():
        if sample.complete and c in checks:
            kept = before.get(c, {}).get("calibration_verdict")
            verdicts[c] = kept if kept is not None and before[c].get("size") == sample.size else llm_unreliable(
                checks=sampled.get(c) or checks[c], target=target_accuracy)
    unreliable = {c for c, verdict in verdicts.items()
                  if verdict or llm_unreliable(checks=checks[c], target=target_accuracy)}
    state = {"target": target_accuracy, "mode": project.routing_mode,
             "calibration": {"size": total.size, "done": total.done, "right": total.right, "n": total.n},
             "llm": _llm_accuracy(total.right, total.n), "reviews": decided, "cap": project.review_cap,
             "checks": {"n": sum(len(c) for c in checks.values()),
                        "wrong": sum(int(c.wrong.sum()) for c in checks.values())},
             "cohorts": {c: {"name": cohort_name(c), "size": sample.size, "done": sample.done, "right": sample.right,
                             "n": sample.n, "unreliable": c in unreliable, "calibrating": c in calibrating,
                             "topping_up": calibrating.get(c) is not None, "calibration_verdict": verdicts.get(c),
                             "marks": marks.get(c)}
                         for c, sample in sorted(samples.items())}}
    for i in candidates.tolist() if calibrating else ():  # cohorts still calibrating: their sample goes to people
        if waits(i):
            cohort = rows[i].cohort
            if i in plan.calibration:
                plan.targets[i] = Status.NEEDS_REVIEW
            else:
                plan.targets[i] = rows[i].status
                plan.reasons[i] = CALIBRATION_WAIT.format(done=samples[cohort].done, size=samples[cohort].size)
    usable = np.fromiter((i for i in candidates.tolist() if not waits(i)), dtype=int) if calibrating else candidates
    if not len(usable) and calibrating:
        state["phase"] = "calibrating"
        state["cap_reached"] = _apply_cap(project=project, rows=rows, amb=amb, plan=plan, decided=decided)
        counts.state = state | {"checks_seen": None}
        return plan
    keep_share = accepted / decided if decided else 1.0
    movable = np.zeros(len(rows), bool)
    movable[usable] = True
    pending = sum(1 for i in open_idx.tolist() if rows[i].proposed is not None and not movable[i])
    del movable
    eligible = np.fromiter((i for i in usable.tolist() if rows[i].cohort not in unreliable), dtype=int)
    eligible_cohorts = [rows[i].cohort for i in eligible.tolist()]
    review = set() if project.routing_mode == RoutingMode.TARGET else _review_set(project, rows, amb, open_idx)
    # Audit draws inside the region go to people: the fill counts them so, and ``_target`` sends them; so do budget
    # and threshold mode's review picks.
    drawn = np.zeros(len(rows), bool)
    if project.audit_rate > 0:
        drawn[eligible] = np.fromiter((audit_draw(project, rows[i].id) < project.audit_rate
                                       for i in eligible.tolist()), dtype=bool, count=len(eligible))
    to_people = drawn[eligible]
    if review:
        to_people = to_people | np.isin(eligible, np.fromiter(review, dtype=int, count=len(review)))
    fill = target_fill(checks=checks, candidates=amb[eligible], cohorts=eligible_cohorts,
                       human_kept=accepted + keep_share * (pending + len(usable) - len(eligible)),
                       keep_share=keep_share, target=target_accuracy, to_people=to_people)
    order = eligible[np.argsort(amb[eligible], kind="stable")]
    allowed = np.zeros(len(rows), bool)
    allowed[order[:fill.auto]] = True
    if fill.reach is not None:
        state["region"] = {"checks": fill.region_checks, "wrong": fill.region_errors, "reach": _rounded(fill.reach)}
        # Of those, the calibration samples' (the rest are audits): the two are drawn from different populations
        # (every item of the cohort; items that entered the region unreviewed), which bench/RESULTS.md compares.
        inside = [sampled[c].within(fill.reach) for c in set(eligible_cohorts) if c in sampled]
        state["region"] |= {"calibration_checks": int(sum(n for n, _ in inside)),
                            "calibration_wrong": int(sum(k for _, k in inside))}
        pooled = [c for c in checks.values() if len(c)]
        if pooled:  # the calibrated p(error) of the most ambiguous item auto-accepted: what the target allows
            model = error_model_fit(reviewed_ambiguity=np.concatenate([c.ambiguity for c in pooled]),
                                    reviewed_wrong=np.concatenate([c.wrong for c in pooled]),
                                    pool_ambiguity=amb[eligible])
            state["max_p_error"] = _rounded(float(model.p_error(np.array([fill.reach]))[0]))
    if any(upto is None for upto in calibrating.values()):
        state["phase"] = "calibrating"
    elif unreliable and len(usable) and not len(eligible):
        state["phase"] = "unreliable"  # once people have decided every item, the certificate may still be reached
    for i in usable.tolist():
        plan.targets[i], reason, audit = _target(project=project, row=rows[i], ambiguity=amb[i],
                                                 allowed=bool(allowed[i]), review=i in review, drawn=bool(drawn[i]),
                                                 unreliable=rows[i].cohort in unreliable)
        if reason:
            plan.reasons[i] = reason
        if audit:
            plan.audits.add(i)
    # Items a reviewer holds keep their status (``_route``); those the plan would auto-accept count as held.
    reach = float(amb[order[:fill.auto]].max()) if fill.auto and len(order) else -1.0
    for i in open_idx.tolist():
        if (rows[i].busy and rows[i].proposed is not None and i not in review and amb[i] <= reach
                and rows[i].cohort not in unreliable and not (calibrating and waits(i))):
            plan.targets[i] = Status.AUTO_ACCEPTED
    state["cap_reached"] = _apply_cap(project=project, rows=rows, amb=amb, plan=plan, decided=decided)
    counts.state = state | {"checks_seen": checks, "calibration_seen": sampled}
    return plan


def _target(*, project: Project, row: _Row, ambiguity: float, allowed: bool, review: bool, drawn: bool,
            unreliable: bool) -> tuple[str, str, bool]:
    """One candidate's destination after calibration, the reason when the usual one would not say why, and whether
    it is an audit draw (``drawn``: its ``audit_draw`` falls under the audit rate)."""
    if unreliable:
        return Status.NEEDS_REVIEW, WITHDRAWN if row.status == Status.AUTO_ACCEPTED else "", False
    if allowed and not review:
        if drawn:
            return Status.NEEDS_REVIEW, "", True
        return (row.status if project.auto_accept_paused else Status.AUTO_ACCEPTED), "", False
    if review or project.routing_mode == RoutingMode.TARGET:
        return Status.NEEDS_REVIEW, "", False
    # Budget and threshold modes choose whom people review; the target still caps what is auto-accepted.
    why = f"the {project.target_accuracy:.0%} target does not allow auto-accepting it (estimated chance the LLM is " \
          f"wrong {ambiguity:.2f})"
    if row.status == Status.AUTO_ACCEPTED:
        return Status.NEEDS_REVIEW, f"to review: auto-accept withdrawn, {why}", False
    return row.status, f"waiting: {why}", False


@dataclass
class _Calibration:
    size: int = 0
    done: int = 0
    right: int = 0
    n: int = 0
    flagged: bool = False

    @property
    def complete(self) -> bool:
        return self.flagged and self.done == self.size

    @classmethod
    def total(cls, samples) -> "_Calibration":
        total = cls()
        for sample in samples:
            total.size += sample.size
            total.done += sample.done
            total.right += sample.right
            total.n += sample.n
        total.flagged = total.size > 0
        return total


def _calibration_marks(*, project: Project, rows: list[_Row], amb: np.ndarray, by_cohort: dict, samples: dict,
                       before: dict, plan: _Plan) -> dict[str, dict]:
    """Draw each new cohort's calibration sample, and a share for items added to a cohort after its sample was drawn.

    Per cohort: ``rate``, the share of its items its first sample drew; ``drawn_upto``, the newest item id a draw has
    covered; ``upto``, the newest covered by a complete sample (None until the first one is). Items that join a
    cohort later (a second import of labels from the same source) get their share: ``rate`` of them (rounded at
    random, so the share is exact on average; never more than a new cohort of their size would draw), stratified by
    ambiguity, so the cohort's checks stay a uniform sample of all its items. Until that share is reviewed the newer
    items wait and the older ones route as before (``calibrating`` in ``_plan``). Projects routed before the marks
    existed start them at their next round."""
    newest: dict[str, int] = {}
    labelled: dict[str, int] = {}
    for r in rows:
        if r.proposed is not None:
            newest[r.cohort] = max(newest.get(r.cohort, 0), r.id)
            labelled[r.cohort] = labelled.get(r.cohort, 0) + 1
    marks = {}
    for cohort, ids in by_cohort.items():
        mark = dict((before.get(cohort) or {}).get("marks") or {})
        if cohort not in samples:  # a new cohort: draw its calibration sample
            size = calibration_size(target=project.target_accuracy, available=len(ids))
            drawn = calibration_draw(ids=ids, ambiguity=amb[ids], size=size, seed=project.pk)
            plan.calibration |= {int(i) for i in drawn}
            samples[cohort] = _Calibration(size=len(drawn), flagged=bool(len(drawn)))
            mark = {"rate": round(len(drawn) / len(ids), 6) if len(ids) else 0.0, "drawn_upto": newest.get(cohort, 0),
                    "upto": None}
        elif "drawn_upto" not in mark:
            mark = _marks_begun(cohort, samples[cohort], newest, labelled)
        else:
            ids_now = np.fromiter((rows[i].id for i in ids.tolist()), dtype=np.int64, count=len(ids))
            fresh = ids[ids_now > mark["drawn_upto"]]
            if len(fresh):
                rng = np.random.default_rng([project.pk, mark["drawn_upto"]])
                share = mark["rate"] * len(fresh)
                take = min(int(share) + int(rng.random() < share - int(share)),
                           calibration_size(target=project.target_accuracy, available=len(fresh)))
                drawn = calibration_draw(ids=fresh, ambiguity=amb[fresh], size=take,
                                         seed=project.pk + mark["drawn_upto"])
                plan.calibration |= {int(i) for i in drawn}
                samples[cohort].size += len(drawn)
                samples[cohort].flagged = samples[cohort].flagged or bool(len(drawn))
                mark["drawn_upto"] = newest.get(cohort, mark["drawn_upto"])
        marks[cohort] = mark
    for cohort, sample in samples.items():
        if cohort not in marks:
            mark = dict((before.get(cohort) or {}).get("marks") or {})
            marks[cohort] = mark if "drawn_upto" in mark else _marks_begun(cohort, sample, newest, labelled)
        if sample.complete:
            marks[cohort]["upto"] = marks[cohort]["drawn_upto"]
    return marks


def _marks_begun(cohort: str, sample: _Calibration, newest: dict, labelled: dict) -> dict:
    """The marks of a cohort routed before they existed: every item it has so far counts as covered by its sample."""
    return {"rate": round(sample.size / max(1, labelled.get(cohort, 0)), 6), "drawn_upto": newest.get(cohort, 0),
            "upto": newest.get(cohort, 0) if sample.complete else None}


def _calibration_samples(*, project: Project) -> dict[str, _Calibration]:
    """Each cohort's calibration sample so far: how many are flagged, decided by a person, and kept the LLM's label."""
    samples: dict[str, _Calibration] = {}
    flagged = Item.objects.filter(project=project, archived_at__isnull=True, is_calibration=True)
    for status, proposed, final, job, labelling_job in flagged.values_list(
            "status", "proposed_labels", "final_labels", *COHORT_FIELDS).iterator():
        sample = samples.setdefault(cohort_of(job, labelling_job), _Calibration(flagged=True))
        sample.size += 1
        if status in FINAL_STATUSES:
            sample.done += 1
            sample.n += 1
            sample.right += status == Status.ACCEPTED and label_class(final) == label_class(proposed)
    return samples


def _checks(*, project: Project, rows: list[_Row],
            ambiguity: np.ndarray) -> tuple[dict[str, Checks], dict[str, Checks]]:
    """Per cohort, people's decisions on randomly drawn items with an LLM label, their ambiguity now and whether the
    LLM was wrong: (calibration samples and audits, the calibration samples alone), read in one pass. Rejected items
    are not rescored (they are out of the dataset), so their ambiguity is the one stored when they were last routed; a
    rejection counts as an error."""
    found: dict[tuple[str, bool], tuple[list, list]] = {}

    def add(cohort: str, calibration: bool, a: float, wrong: bool) -> None:
        seen = found.setdefault((cohort, calibration), ([], []))
        seen[0].append(a)
        seen[1].append(wrong)

    for r, a in zip(rows, ambiguity):
        if r.human is not None and r.proposed is not None and (r.is_calibration or r.is_audit):
            add(r.cohort, r.is_calibration, a, r.human != r.proposed)
    rejected = (Item.objects.filter(project=project, archived_at__isnull=True, status=Status.REJECTED)
                .filter(Q(is_calibration=True) | Q(is_audit=True)).exclude(proposed_labels=[])
                .values_list("ambiguity", "is_calibration", *COHORT_FIELDS))
    for a, calibration, job, labelling_job in rejected.iterator():
        add(cohort_of(job, labelling_job), calibration, 1.0 if a is None else a, True)
    every, sampled = {}, {}
    for cohort in {cohort for cohort, _ in found}:
        drawn, audits = found.get((cohort, True), ([], [])), found.get((cohort, False), ([], []))
        every[cohort] = Checks.of(ambiguity=drawn[0] + audits[0], wrong=drawn[1] + audits[1])
        if drawn[0]:
            sampled[cohort] = Checks.of(ambiguity=drawn[0], wrong=drawn[1])
    return every, sampled


def _llm_accuracy(right: int, n: int) -> dict | None:
    """How often the LLM's label stood on the calibration sample (a random sample: an unbiased estimate)."""
    if not n:
        return None
    low, high = exact_interval(right, n)
    return {"right": right, "n": n, "low": round(low, 4), "high": round(high, 4)}


def _apply_cap(*, project: Project, rows: list[_Row], amb: np.ndarray, plan: _Plan, decided: int) -> bool:
    """Keep the items people review (decided + in review) within ``review_cap``: the most ambiguous moves first, the
    rest wait where they are. True when some had to wait."""
    if project.review_cap is None:
        return False
    staying = sum(1 for i, r in enumerate(rows) if r.status == Status.NEEDS_REVIEW
                  and plan.targets.get(i, r.status) == Status.NEEDS_REVIEW)
    moves = sorted((i for i, t in plan.targets.items() if t == Status.NEEDS_REVIEW
                    and rows[i].status != Status.NEEDS_REVIEW and not rows[i].busy),
                   key=lambda i: (rows[i].proposed is not None, -amb[i], rows[i].id))
    slots = max(0, project.review_cap - decided - staying)
    for i in moves[slots:]:
        plan.targets[i] = rows[i].status
        plan.audits.discard(i)
        plan.reasons[i] = f"waiting: the review cap ({project.review_cap} items) is reached"
    return len(moves) > slots


def _certify(*, project: Project, state: dict, current: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """After routing: is the dataset, as it now stands, at the target with 95% confidence? ``current``: this round's
    ambiguity (NaN: not scored) of the item ids in the first array, where the rows may show an older one."""
    checks, calibration = state.pop("checks_seen"), state.pop("calibration_seen", None)
    items = Item.objects.filter(project=project, archived_at__isnull=True)
    waiting = items.filter(status__in=(Status.PROPOSED, Status.NEEDS_REVIEW)).count()
    state["remaining"] = waiting
    if checks is None:
        return state
    accepted = items.filter(status=Status.ACCEPTED).count()
    # Streamed into arrays: a million auto-accepted rows as Python tuples would weigh a few hundred MB.
    wanted, auto, cohorts, known = array("q"), array("d"), [], {}
    for pk, a, job, labelling in items.filter(status=Status.AUTO_ACCEPTED).values_list(
            "id", "ambiguity", *COHORT_FIELDS).order_by().iterator(chunk_size=10_000):
        wanted.append(pk)
        auto.append(1.0 if a is None else a)
        key = (job, labelling)
        if key not in known:
            known[key] = cohort_of(job, labelling)
        cohorts.append(known[key])
    auto = np.array(auto, dtype=float)
    if current is not None:
        fresh = values_by_id(*current, np.frombuffer(wanted, dtype=np.int64))
        auto = np.where(np.isnan(fresh), auto, fresh)
    estimate, lower = dataset_bound(checks=checks, auto_ambiguity=auto, human_kept=accepted, cohorts=cohorts)
    state.update(estimate=_rounded(estimate), lower_bound=_rounded(lower), auto_accepted=len(auto))
    if state.get("region") is not None:
        state["region"]["zones"] = _zones(items=items, checks=checks, calibration=calibration, auto=auto,
                                          cohorts=set(cohorts), current=current)
    if state.get("phase") not in ("unreliable", "calibrating"):
        reached = not waiting and lower is not None and lower >= project.target_accuracy
        state["phase"] = "reached" if reached else "not_yet"
    return state


def _zones(*, items, checks: dict, calibration: dict, auto: np.ndarray, cohorts: set, current) -> list[dict]:
    """The auto-accepted items in the zones the shown estimate counts (``calibration.region_zones``): cut where the
    least ambiguous random check among them still waits for a person."""
    def merged(by_cohort: dict) -> Checks:
        own = [c for cohort, c in by_cohort.items() if cohort in cohorts]
        return Checks.of(ambiguity=np.concatenate([c.ambiguity for c in own] or [np.zeros(0)]),
                         wrong=np.concatenate([c.wrong for c in own] or [np.zeros(0, bool)]))

    ids, waiting = array("q"), array("d")
    # Random checks wait in review (the queue's partial index ``item_queue_checks`` reads them).
    for pk, a, job, labelling in (items.filter(RANDOM_CHECK, status=Status.NEEDS_REVIEW).exclude(proposed_labels=[])
                                  .values_list("id", "ambiguity", *COHORT_FIELDS).iterator()):
        if cohort_of(job, labelling) in cohorts:
            ids.append(pk)
            waiting.append(1.0 if a is None else a)
    waiting = np.array(waiting, dtype=float)
    if current is not None and len(ids):
        fresh = values_by_id(*current, np.frombuffer(ids, dtype=np.int64))
        waiting = np.where(np.isnan(fresh), waiting, fresh)
    return region_zones(checks=merged(checks), calibration=merged(calibration or {}), auto=auto, waiting=waiting)


def score_signals(scores, i: int, row: _Row) -> dict:
    """JSON-safe per-item signals for the "why routed" panel (4 decimals; missing ones left out)."""
    out = {
        "p_llm_wrong": scores.ambiguity[i],
        "p_llm_label": scores.p_llm_label[i],
        "least_confident": scores.least_confident[i],
        "margin": scores.margin[i],
        "entropy": scores.entropy[i],
        "vote_entropy": scores.vote_entropy[i],
        "kl_max_disagreement": scores.kl_max[i],
        "llm_confidence": row.llm_confidence if row.llm_confidence is not None else float("nan"),
    }
    signals = {k: round(float(v), 4) for k, v in out.items() if v is not None and math.isfinite(float(v))}
    top = np.argsort(-scores.proba[i])[:3]
    signals.update({f"p({scores.labels[j]})": round(float(scores.proba[i, j]), 4) for j in top})
    signals["out_of_fold"] = bool(scores.out_of_fold[i])
    return signals


@dataclass(frozen=True, slots=True)
class ScoreView:
    """What a route reason quotes of an item's scores: the model's label, its probability, the ambiguity."""

    model_label: str
    p_model: float
    ambiguity: float


def _view(scores, i: int) -> ScoreView:
    # The numbers the "details" panel stores (``score_signals``, 4 decimals): the sentence quotes the same ones, so
    # the two never round apart (0.064996 would read 0.06 in the sentence and 0.065, shown 0.07, in the panel).
    return ScoreView(scores.model_labels[i], round(float(scores.proba[i].max()), 4),
                     round(float(scores.ambiguity[i]), 4))


def _stored_views(wanted: list[int]) -> dict[int, ScoreView]:
    """The stored scores of the rows a chunked round's routing writes (those that move, or whose flags or reason
    change), read in batches: the model's probability lives in ``model_scores``."""
    views = {}
    for start in range(0, len(wanted), WRITE_BATCH):
        for pk, label, signals, ambiguity in Item.objects.filter(pk__in=wanted[start:start + WRITE_BATCH]).values_list(
                "id", "model_label", "model_scores", "ambiguity").order_by():
            p = max((v for k, v in (signals or {}).items() if k.startswith("p(") and isinstance(v, (int, float))),
                    default=0.0)
            quoted = (signals or {}).get("p_llm_wrong", ambiguity)
            views[pk] = ScoreView(label or "", float(p), 1.0 if quoted is None else float(quoted))
    return views


def route_reason(row: _Row, view: ScoreView | None, *, audit: bool, to_review: bool) -> str:
    """Why the item went where it went, in an annotator's words, from this item's own signals (the raw numbers stay in
    ``model_scores``). ``ambiguity`` is the model's estimated chance that the LLM's label is wrong."""
    if row.proposed is None:
        return "to review: the LLM gave no label"
    llm = _shown_labels(row.proposed)
    if audit:
        return f"to review: audit sample, a random check of items that would be auto-accepted (LLM said '{llm}')"[:200]
    if view is None:
        return ""
    model = _shown_labels(view.model_label)
    if view.model_label == row.proposed:
        verdict = f"LLM and model agree on '{llm}'"
    else:
        verdict = f"model predicts '{model}' ({view.p_model:.2f}), LLM said '{llm}'"
    detail = f"estimated chance the LLM is wrong {view.ambiguity:.2f}"
    if row.llm_confidence is not None and row.llm_confidence < 0.6:
        detail += f"; the LLM's own confidence {row.llm_confidence:.2f}"
    return f"{'to review' if to_review else 'auto-accepted'}: {verdict}; {detail}"[:200]


def _shown_labels(key: str) -> str:
    return key.replace("|", " + ")


# Written only while nobody holds the row: a reviewer's save never waits on a round's batch.
NOT_HELD = "({t}.claimed_by_id IS NULL OR {t}.lease_expires_at IS NULL OR {t}.lease_expires_at < %s)"


def _write(*, project: Project, updates: list, counts: RoutingCounts, changed_only: bool = False) -> None:
    """Write the round's updates in batches: moves through ``items_change`` (a Review row each), the rest (scores,
    flags, reasons) with one statement per batch that leaves alone rows whose version moved since they were read
    (reviewed or edited while the model trained) and rows a reviewer holds (they keep the last round's scores until
    reviewed; bench/RESULTS.md, "Tail under contention"). ``changed_only`` (a chunked round's routing, which writes
    flags and reasons only) also leaves alone rows that hold those values already; the rows it did not write count
    as unchanged, those changed meanwhile among them."""
    now = timezone.now()
    for start in range(0, len(updates), WRITE_BATCH):
        chunk = updates[start:start + WRITE_BATCH]
        moves = {row.id: (row, fields, target) for row, fields, target in chunk if target is not None}
        stays = [(row, fields) for row, fields, target in chunk if target is None]
        kept: list[tuple[_Row, dict]] = []

        def decide(item: Item) -> ItemChange | None:
            row, fields, target = moves[item.pk]
            if item.version != row.version:
                return None  # reviewed or edited while the model trained: counted below
            if item.review_count > 0:
                counts.held += 1
                kept.append((row, fields))
                return None
            _count(counts, row, target, fields["is_audit"])
            action = ReviewAction.ROUTE if target == Status.NEEDS_REVIEW else ReviewAction.AUTO_ACCEPT
            return ItemChange(action=action, to=target, fields=fields, note=fields["route_reason"])

        # One transaction per batch: moved rows stay locked from the version check to the last write.
        with transaction.atomic():
            moved = items_change(project_id=project.pk, item_ids=moves, decide=decide, skip_held=True) if moves else []
            written = sum(_write_fields(rows, now, changed_only) for rows in (kept, stays) if rows)
            items_apply_overlap(project=project,
                                item_ids=[item.pk for item in moved if item.status == Status.NEEDS_REVIEW])
        stayed = len(stays) if changed_only else written - len(kept)
        counts.unchanged += stayed
        counts.skipped_changed += len(chunk) - len(moved) - len(kept) - stayed  # changed, held or deleted meanwhile


def _write_fields(rows: list[tuple[_Row, dict]], now, changed_only: bool) -> int:
    names = list(rows[0][1])
    return rows_write(model=Item, fields=names, match=("version",), where=NOT_HELD, where_params=[now],
                      changed_only=changed_only,
                      rows=[(row.id, *(fields[name] for name in names), row.version) for row, fields in rows])


def _count(counts: RoutingCounts, row: _Row, target: str, audit: bool) -> None:
    if target == Status.AUTO_ACCEPTED:
        counts.to_auto_accept += 1
    elif audit:
        counts.audits += 1
    elif row.status == Status.AUTO_ACCEPTED:
        counts.back_to_review += 1
    else:
        counts.to_review += 1


@transaction.atomic
def auto_accept_decide(*, project: Project, user, resume: bool) -> Project:
    """The lead's answer to a pause: resume auto-accepting or keep it paused.

    Rounds no longer pause by themselves: audits are checks, and a region whose checks find errors shrinks and its
    items go back to review (``_plan``); before the certificate, audits all counted together paused auto-accept, and
    those paused projects wait for this decision."""
    project = Project.objects.select_for_update().get(pk=project.pk)
    if not project.auto_accept_paused:
        raise ServiceError("Auto-accept is not paused; there is nothing to decide.")
    now = timezone.now()
    if resume:
        project.auto_accept_paused = False
        project.auto_accept_paused_reason = ""
    else:
        project.auto_accept_paused_reason = (
            f"{project.auto_accept_paused_reason} {user.get_username()} kept it paused on {now:%Y-%m-%d %H:%M} UTC."
        ).strip()
    project.auto_accept_decided_at = now
    project.save(update_fields=["auto_accept_paused", "auto_accept_paused_reason", "auto_accept_decided_at"])
    return project

