"""Chunked rounds: a project too large for one process is trained on a bounded sample and scored by any workers.

A project with more live items than ``SELECTION_TRAIN_SIZE`` (filtered and rejected ones aside) gets a round in three
stages, each a Celery task any worker on any machine can run; the embedded default's one local worker runs the same
tasks one after the other:

1. **train** (``round_train``, in the task that claimed the round): the training set is every human decision plus a
   stratified sample of ``SELECTION_TRAIN_SIZE`` LLM-labelled open items (proportional per cohort and LLM label, with
   a floor per stratum, seeded by the round). The featurizer is fitted on it (``SELECTION_FEATURES``:
   learned n-grams or hashed ones), the committee cross-validated on it as in a one-process round, and its open items
   get their out-of-fold scores at once. The model (``scoring.Model`` with its featurizer) is pickled into a
   ``ScoringModel`` row, not into the task messages; the open items outside the training set are cut by id into
   ``ScoringChunk`` rows of ``SELECTION_CHUNK_SIZE``.
2. **score** (``chunk_run``, one task per chunk, sent as a Celery group): a chunk reads its items by id range (the
   training set's left out), scores them all with the fold-averaged model, keeps the scores in its chunk row for
   routing, and writes only the rows whose shown scores change (``_write_scores``), a batch per statement, skipping
   items a reviewer holds and items that left the open statuses. A chunk run twice (its worker died, the broker
   redelivered it, a retry) computes the same scores and writes what the first run did not, so every item is scored
   once per round. Tasks are acknowledged late and
   requeued when their worker is lost; a chunk that raises is retried alone.
3. **route** (``round_route``): the last chunk to finish (counted under the round row's lock, so two chunks finishing
   at once cannot both miss it) queues one routing task. It plans on the scores of this round, exactly as a
   one-process round does (``rounds._plan``), and writes only the rows that move or whose flags or reason change. An
   open item this round did not score (held by a reviewer, or added since training) stays where it is until the next
   round. So routing is one decision on one model version, never a mix of two rounds' scores.

Two rounds never interleave: the round stays ``running`` from its claim to its routing, and ``_claim_round`` refuses
a second one meanwhile. Each claim, stage and finished chunk stamps ``ScoringRound.progress_at``. A chunk whose run
died stays ``running``; a round request made while the round has not moved for ``CHUNK_STALE_AFTER`` sends again
every chunk not done, or the routing task (``round_resume``); a round silent for ``ROUND_STALE_AFTER`` is failed by
the next claim (``rounds._claim_round``), its stored model dropped.
"""
import io
import json
import logging
import pickle
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from annotation.models import Item, Project, ScoringChunk, ScoringModel, ScoringRound, Status
from annotation.selection import scoring
from annotation.selection.features import Featurizer, featurize
from annotation.selection.rounds import (
    NOT_HELD,
    OPEN_STATUSES,
    WRITE_BATCH,
    _load_rows,
    _route,
    _Row,
    _texts,
    _view,
    label_class,
    round_fail,
    round_finish,
    round_record,
    route_reason,
    score_signals,
    values_by_id,
)
from synthstudio.lib.sql import rows_write

log = logging.getLogger(__name__)

MIN_PER_STRATUM = 50
# A row's shown ambiguity is rewritten when it moves by this much (or its reason or model label changes).
SHOWN_STEP = 0.005
CHUNK_STALE_AFTER = timedelta(minutes=10)
# A routing step claimed this long ago without finishing is taken for dead (routing 1M items takes about a minute).
ROUTE_STALE_AFTER = timedelta(minutes=30)
CHUNK_FIELDS = ["ambiguity", "model_label", "model_scores", "route_reason", "scored_round"]


class _Stored:
    """The scores a chunked round's routing plans on: each row's ambiguity as this round stored it."""

    def __init__(self, ambiguity: np.ndarray):
        self.ambiguity = ambiguity


# --- train --------------------------------------------------------------------------------------------------------

def round_train(*, project: Project, scoring_round: ScoringRound, rows: list[_Row]) -> bool:
    """Train on the bounded set, score its open items, store the model and cut the rest into chunks. False when there
    is too little to train on: the round was then routed as such a round is (nothing scored) and is ready to finish."""
    ScoringRound.objects.filter(pk=scoring_round.pk).update(stage=ScoringRound.Stage.TRAIN, progress_at=timezone.now())
    # The sample's and the folds' seed is the project's: rounds train on the same items plus the new decisions, so an
    # item's scores move between rounds only as much as the new decisions move them, and few rows need writing
    # (``_write_scores``).
    sample = training_sample(rows, size=settings.SELECTION_TRAIN_SIZE, seed=project.pk)
    train_rows = [rows[i] for i in sample]
    texts = _texts(project, train_rows)
    _stored(train_rows)
    featurizer = Featurizer(kind=settings.SELECTION_FEATURES)
    X = featurize(texts, featurizer, fit=True)
    del texts
    fitted = scoring.fit(
        X, llm=[r.proposed for r in train_rows], human=[r.human for r in train_rows],
        llm_confidence=np.array([np.nan if r.llm_confidence is None else r.llm_confidence for r in train_rows]),
        checks=np.array([r.is_calibration or r.is_audit for r in train_rows], dtype=bool),
        keys=np.array([r.id for r in train_rows], dtype=np.int64), seed=project.pk,
    )
    if fitted is None:
        counts = _route(project=project, scoring_round=scoring_round, rows=rows, scores=None)
        round_record(project=project, scoring_round=scoring_round, rows=rows, scores=None, counts=counts,
                     training_size=len(train_rows), items_scored=0)
        return False
    scores, model = fitted
    del X
    written = _write_scores(version=scoring_round.model_version, rows=train_rows, scores=scores)
    trained = {r.id for r in train_rows}
    rest = [r.id for r in rows if r.status in OPEN_STATUSES and r.id not in trained]
    bounds = [(rest[i], rest[min(i + settings.SELECTION_CHUNK_SIZE, len(rest)) - 1])
              for i in range(0, len(rest), settings.SELECTION_CHUNK_SIZE)]
    with transaction.atomic():
        ScoringModel.objects.create(
            scoring_round=scoring_round, model=pickle.dumps((featurizer, model), protocol=pickle.HIGHEST_PROTOCOL),
            train_scores=_packed([r.id for r in train_rows], scores.ambiguity),
        )
        ScoringChunk.objects.bulk_create(ScoringChunk(scoring_round=scoring_round, index=i, first_id=first,
                                                      last_id=last) for i, (first, last) in enumerate(bounds))
        scoring_round.chunks = len(bounds)
        scoring_round.training_size = len(train_rows)
        scoring_round.metrics.update(_training_metrics(scores, train_rows) | {"written_by_training": written})
        scoring_round.stage = ScoringRound.Stage.SCORE if bounds else ScoringRound.Stage.ROUTE
        scoring_round.progress_at = timezone.now()
        scoring_round.save(update_fields=["chunks", "training_size", "items_scored", "metrics", "stage",
                                          "progress_at"])
    return True


def training_sample(rows: list[_Row], *, size: int, seed: int) -> list[int]:
    """Indices of the training set, in id order: every row a person decided, and ``size`` of the other LLM-labelled
    rows, drawn per stratum (cohort x LLM label) in proportion to it, at least ``MIN_PER_STRATUM`` of each (a quarter
    of ``size`` shared out, when that is fewer), so a rare label is still learned; with a generator seeded by
    ``seed`` (the project's id: the same sample round after round)."""
    rng = np.random.default_rng(seed)
    humans = [i for i, r in enumerate(rows) if r.human is not None]
    strata: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r.human is None and r.proposed is not None:
            strata.setdefault((r.cohort, r.proposed), []).append(i)
    total = sum(len(members) for members in strata.values())
    floor = min(MIN_PER_STRATUM, max(1, size // (4 * max(len(strata), 1))))
    chosen = list(humans)
    for members in strata.values():
        want = max(min(len(members), floor), round(size * len(members) / max(total, 1)))
        picked = rng.choice(len(members), size=min(want, len(members)), replace=False)
        chosen.extend(members[j] for j in picked)
    return sorted(chosen)


def _training_metrics(scores, rows: list[_Row]) -> dict:
    return {"folds": scores.folds, "error_model": scores.error_model,
            "cv_human_agreement": None if scores.cv_human_agreement is None
            else round(float(scores.cv_human_agreement), 4),
            "suspect": int(scores.suspect.sum()), "trained_on": len(rows)}


def _packed(ids: list[int], ambiguity: np.ndarray) -> bytes:
    """Scores as stored for routing: item ids and their ambiguity at full precision (.npz)."""
    buffer = io.BytesIO()
    np.savez(buffer, ids=np.asarray(ids, dtype=np.int64), ambiguity=np.asarray(ambiguity, dtype=np.float64))
    return buffer.getvalue()


def _unpacked(data) -> tuple[np.ndarray, np.ndarray]:
    arrays = np.load(io.BytesIO(bytes(data)))
    return arrays["ids"], arrays["ambiguity"]


# --- score --------------------------------------------------------------------------------------------------------

def round_continue(*, scoring_round: ScoringRound, fan_out: bool) -> ScoringRound:
    """After training: send the chunks to the workers (``fan_out``), or score them and route here."""
    if fan_out:
        transaction.on_commit(lambda: _send(scoring_round.pk, range(scoring_round.chunks)))
        if not scoring_round.chunks:
            transaction.on_commit(lambda: _send_route(scoring_round.pk))
        return scoring_round
    for index in range(scoring_round.chunks):
        chunk_run(round_id=scoring_round.pk, index=index, queue_route=False)
    return round_route(round_id=scoring_round.pk)


def _send(round_id: int, indices) -> None:
    from celery import group

    from annotation.selection.tasks import selection_score_chunk

    group(selection_score_chunk.si(round_id, index) for index in indices).apply_async()


def _send_route(round_id: int) -> None:
    from annotation.selection.tasks import selection_route

    selection_route.delay(round_id)


_MODEL_CACHE: dict[int, tuple] = {}


def _model(round_id: int) -> tuple:
    """The round's (featurizer, model, ids of its training set), unpickled once per process and round (a worker keeps
    the latest only)."""
    if round_id not in _MODEL_CACHE:
        stored = ScoringModel.objects.filter(scoring_round=round_id).values_list("model", "train_scores").first()
        if stored is None:
            raise ScoringModel.DoesNotExist(f"round {round_id} has no stored model")
        _MODEL_CACHE.clear()
        featurizer, model = pickle.loads(bytes(stored[0]))
        _MODEL_CACHE[round_id] = (featurizer, model, set(_unpacked(stored[1])[0].tolist()))
    return _MODEL_CACHE[round_id]


def chunk_run(*, round_id: int, index: int, queue_route: bool = True) -> int | None:
    """Score one chunk; the number of items it scored, or None when there was nothing to do (the chunk is done, or the
    round ended). The last chunk to finish queues the routing step (``queue_route``) or leaves it to the caller."""
    now = timezone.now()
    live = ScoringRound.objects.filter(pk=round_id, state=ScoringRound.State.RUNNING, stage=ScoringRound.Stage.SCORE)
    round_row = live.values("project_id", "model_version").first()
    if round_row is None:
        return None
    claimed = ScoringChunk.objects.filter(scoring_round=round_id, index=index).exclude(
        state=ScoringChunk.State.DONE).update(state=ScoringChunk.State.RUNNING, attempts=F("attempts") + 1,
                                              started_at=now)
    if not claimed:
        return None
    chunk = ScoringChunk.objects.get(scoring_round=round_id, index=index)
    featurizer, model, trained = _model(round_id)
    version = round_row["model_version"]
    rows, texts = _chunk_rows(project_id=round_row["project_id"], first=chunk.first_id, last=chunk.last_id,
                              trained=trained)
    written, ambiguity = 0, np.zeros(0)
    if rows:
        scores = model.score(featurize(texts, featurizer), llm=[r.proposed for r in rows],
                             llm_confidence=np.array([np.nan if r.llm_confidence is None else r.llm_confidence
                                                      for r in rows]))
        del texts
        written = _write_scores(version=version, rows=rows, scores=scores)
        ambiguity = scores.ambiguity
    with transaction.atomic():
        # The round row's lock orders chunks that finish at the same moment: the later one sees the earlier one done.
        ScoringRound.objects.select_for_update().filter(pk=round_id).values_list("pk", flat=True).first()
        ScoringChunk.objects.filter(pk=chunk.pk).update(
            state=ScoringChunk.State.DONE, finished_at=timezone.now(), items_scored=len(rows),
            items_written=F("items_written") + written, scores=_packed([r.id for r in rows], ambiguity))
        left = ScoringChunk.objects.filter(scoring_round=round_id).exclude(state=ScoringChunk.State.DONE).exists()
        last = not left and live.update(stage=ScoringRound.Stage.ROUTE, progress_at=timezone.now())
        if not last:
            ScoringRound.objects.filter(pk=round_id).update(progress_at=timezone.now())
        if last and queue_route:
            transaction.on_commit(lambda: _send_route(round_id))
    return len(rows)


def _chunk_rows(*, project_id: int, first: int, last: int, trained: set) -> tuple[list[_Row], list[str]]:
    """The chunk's open items outside the training set, by id range (the items' primary key index), with the scores
    they show now."""
    rows, texts = [], []
    classes: dict = {}
    # The label list as the database's JSON text, parsed once per distinct value (as ``rounds._load_rows`` does).
    items = (Item.objects.filter(project_id=project_id, archived_at__isnull=True, status__in=OPEN_STATUSES,
                                 id__gte=first, id__lte=last)
             .annotate(proposed_raw=Cast("proposed_labels", TextField()))
             .values_list("id", "text", "status", "version", "proposed_raw", "llm_confidence", "is_audit",
                          "ambiguity", "model_label", "route_reason", "scored_round")
             .order_by("id"))
    for (pk, text, status, item_version, proposed, confidence, is_audit, ambiguity, model_label, reason,
         scored) in items.iterator(chunk_size=5000):
        if pk in trained:
            continue
        if proposed not in classes:
            classes[proposed] = label_class(json.loads(proposed)) if proposed else None
        row = _Row(id=pk, status=status, version=item_version, proposed=classes[proposed], human=None,
                   llm_confidence=confidence, is_audit=is_audit, is_calibration=False, busy=False,
                   ambiguity=ambiguity, model_label=model_label)
        row.shown = (reason, scored)
        rows.append(row)
        texts.append(text)
    return rows, texts


def _stored(rows: list[_Row]) -> None:
    """Attach to ``rows`` (the training set) the scores, reason and round their items show now."""
    shown = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 5000):
        shown.update((pk, rest) for pk, *rest in Item.objects.filter(pk__in=ids[start:start + 5000]).values_list(
            "id", "ambiguity", "model_label", "route_reason", "scored_round").order_by())
    for row in rows:
        row.ambiguity, row.model_label, *row.shown = shown.get(row.id, (None, "", "", None))


def _write_scores(*, version: int, rows: list[_Row], scores) -> int:
    """Write the open rows whose shown scores change, batch by batch: never scored, another model label, another
    reason (which quotes the ambiguity and the model's probability to two decimals), or an ambiguity that moved by
    ``SHOWN_STEP`` or more. The others keep what they show (and the round that wrote it); routing reads this round's
    scores from the chunks, not from the rows. Rows a reviewer holds now are skipped. The number written."""
    written = 0
    for start in range(0, len(rows), WRITE_BATCH):
        values = []
        for i in range(start, min(start + WRITE_BATCH, len(rows))):
            row = rows[i]
            if row.status not in OPEN_STATUSES:
                continue
            ambiguity = float(scores.ambiguity[i])
            view = _view(scores, i)
            audit = row.is_audit and row.status == Status.NEEDS_REVIEW
            shown_reason, shown_round = row.shown
            # A row waiting in "proposed" shows why it waits, which only routing knows: its reason is routing's.
            reason = shown_reason if row.status == Status.PROPOSED and shown_round is not None else route_reason(
                row, view, audit=audit, to_review=row.status == Status.NEEDS_REVIEW)
            if (shown_round is not None and shown_reason == reason and row.model_label == scores.model_labels[i][:100]
                    and row.ambiguity is not None and abs(row.ambiguity - ambiguity) < SHOWN_STEP):
                continue
            values.append((row.id, None if np.isnan(ambiguity) else round(ambiguity, 6),
                           scores.model_labels[i][:100], score_signals(scores, i, row), reason, version))
        written += rows_write(model=Item, fields=CHUNK_FIELDS, rows=values, where=_FREE, where_params=[timezone.now()])
    return written


# Written only while open and not held by a reviewer (whose save must never wait on a chunk's batch; the item keeps
# its last scores until reviewed).
_FREE = "{t}.status IN (" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ") AND " + NOT_HELD


# --- route --------------------------------------------------------------------------------------------------------

def round_route(*, round_id: int) -> ScoringRound | None:
    """Route the project on this round's scores, record and finish the round; None if the round is not waiting to
    route. The step is claimed first (``route`` -> ``routing``, one conditional UPDATE), so a routing task sent twice
    (``round_resume``, a broker's redelivery) routes once; a claim older than ``ROUTE_STALE_AFTER`` (its worker died)
    may be taken over."""
    now = timezone.now()
    waiting = Q(stage=ScoringRound.Stage.ROUTE) | Q(stage=ScoringRound.Stage.ROUTING,
                                                    progress_at__lt=now - ROUTE_STALE_AFTER)
    claimed = ScoringRound.objects.filter(waiting, pk=round_id, state=ScoringRound.State.RUNNING).update(
        stage=ScoringRound.Stage.ROUTING, progress_at=now)
    if not claimed:
        return None
    scoring_round = ScoringRound.objects.get(pk=round_id)
    project = Project.objects.get(pk=scoring_round.project_id)
    try:
        rows, _ = _load_rows(project, texts=False)
        ambiguity = _round_scores(round_id, np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows)))
        # An open row no chunk scored (added since training) stays where it is, as a row a reviewer holds does.
        items_scored = 0
        for row, value in zip(rows, ambiguity.tolist()):
            if row.status in OPEN_STATUSES:
                if value != value:  # NaN: not scored by this round
                    row.busy = True
                else:
                    items_scored += 1
        counts = _route(project=project, scoring_round=scoring_round, rows=rows, scores=_Stored(ambiguity),
                        stored=True)
        metrics = dict(scoring_round.metrics)
        written = ScoringChunk.objects.filter(scoring_round=round_id).aggregate(n=Sum("items_written"))["n"] or 0
        round_record(project=project, scoring_round=scoring_round, rows=rows, scores=None, counts=counts,
                     training_size=scoring_round.training_size, items_scored=items_scored)
        kept = {k: metrics[k] for k in ("folds", "error_model", "cv_human_agreement") if k in metrics}
        scoring_round.metrics.update(kept | {"note": "", "chunked": True,
                                             "rows_written": written + metrics.get("written_by_training", 0)})
    except Exception as exc:
        round_fail(scoring_round=scoring_round, exc=exc)
        raise
    ScoringModel.objects.filter(scoring_round=round_id).delete()
    ScoringChunk.objects.filter(scoring_round=round_id).update(scores=None)  # read by routing only
    _MODEL_CACHE.pop(round_id, None)
    return round_finish(project=project, scoring_round=scoring_round)


def _round_scores(round_id: int, row_ids: np.ndarray) -> np.ndarray:
    """This round's ambiguity of each of ``row_ids`` (NaN where neither training nor a chunk scored it), from the
    packed blobs, as arrays (a dict of a million Python floats would weigh about 100 MB)."""
    blobs = [ScoringModel.objects.filter(scoring_round=round_id).values_list("train_scores", flat=True).first(),
             *ScoringChunk.objects.filter(scoring_round=round_id).values_list("scores", flat=True)]
    parts = [_unpacked(blob) for blob in blobs if blob is not None]
    return values_by_id(np.concatenate([p[0] for p in parts] or [np.zeros(0, np.int64)]),
                        np.concatenate([p[1] for p in parts] or [np.zeros(0)]), row_ids)


# --- recovery -----------------------------------------------------------------------------------------------------

def round_resume(*, project_id: int) -> int:
    """Send again what the project's running round waits on when nothing has moved for ``CHUNK_STALE_AFTER`` (no
    chunk finished, no stage began): its unfinished chunks, pending or running (their messages or workers were lost),
    or its routing task (never picked up, or its claim older than ``ROUTE_STALE_AFTER``); how many tasks were sent.
    ``chunk_run`` and ``round_route`` do nothing when their step is done, and routing is claimed once, so a task sent
    twice costs one read (a chunk still running elsewhere is scored twice, with the same scores)."""
    scoring_round = ScoringRound.objects.filter(project_id=project_id, state=ScoringRound.State.RUNNING).first()
    if scoring_round is None:
        return 0
    now = timezone.now()
    quiet = now - (scoring_round.progress_at or scoring_round.started_at)
    if scoring_round.stage == ScoringRound.Stage.SCORE and quiet > CHUNK_STALE_AFTER:
        late = list(ScoringChunk.objects.filter(scoring_round=scoring_round).exclude(state=ScoringChunk.State.DONE)
                    .values_list("index", flat=True))
        if late:
            log.warning("Round %s: chunks %s stopped reporting; sent again.", scoring_round.pk, late)
            transaction.on_commit(lambda: _send(scoring_round.pk, late))
        return len(late)
    lost = {ScoringRound.Stage.ROUTE: CHUNK_STALE_AFTER, ScoringRound.Stage.ROUTING: ROUTE_STALE_AFTER}
    if scoring_round.stage in lost and quiet > lost[scoring_round.stage]:
        log.warning("Round %s: its routing stopped reporting; sent again.", scoring_round.pk)
        transaction.on_commit(lambda: _send_route(scoring_round.pk))
        return 1
    return 0


def round_abandon(*, round_id: int, exc: BaseException) -> None:
    """A chunk failed every retry: the round fails with its error (the next round starts afresh)."""
    scoring_round = ScoringRound.objects.filter(pk=round_id, state=ScoringRound.State.RUNNING).first()
    if scoring_round is not None:
        round_fail(scoring_round=scoring_round, exc=exc)
