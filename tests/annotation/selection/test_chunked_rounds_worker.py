"""A real Celery worker killed with SIGKILL while it scores a chunk of a chunked round (issue 19): the round still ends
done, every open item scored by it, its row written once, and routed once.

The test watches the database until a chunk is running with its first batch of scores written and the rest not, and
kills the worker while every write is held (``writes_held``), so the chunk cannot finish between the look and the
kill. How each broker brings the chunk back:
- pool process killed (Redis, filesystem): ``acks_late`` with ``reject_on_worker_lost`` puts the message back at
  once, and a new pool process runs the chunk again: the same stored model gives the same scores, and it writes
  the rows the dead run had not;
- whole worker killed, Redis: the message stays unacknowledged, and the next worker restores it on start once the
  visibility timeout has passed;
- whole worker killed, filesystem: the transport deleted the message when it handed it out, so the chunk stays
  ``running``; the next ``selection_round`` request sends it again once it is older than ``CHUNK_STALE_AFTER`` (the
  test moves its start back rather than wait ten minutes).

A chunk is a few seconds of work, and its first batch (``WRITE_BATCH`` rows) is written after all of it is scored:
the chunks here hold two and a half batches, so a chunk stays half written for the time of two batch writes (about
10,000 items, where a few hundred would do for everything else; ``make_pool`` in one transaction keeps that quick).
"""
import os
import signal
import time
import uuid
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.db.models import Count, F

from annotation.models import Item, Review, ReviewAction, ScoringChunk, ScoringRound, Status
from annotation.selection.chunks import CHUNK_STALE_AFTER
from annotation.selection.rounds import OPEN_STATUSES, WRITE_BATCH
from tests.support.factories import make_pool
from tests.support.runtime import Broker, children_of, start_worker, stop_worker, wait_for, worker_env

# Real workers, killed and restarted, on the Redis database the other worker-kill tests use (a restart restores every
# unacknowledged message older than the 2 s visibility timeout, another test's too): one xdist worker runs them all.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("redis-visibility-timeout")]

TRAIN_SIZE = 40
CHUNK_SIZE = 5 * WRITE_BATCH // 2
ITEMS_PER_LABEL = CHUNK_SIZE + TRAIN_SIZE // 2  # two labels: about two chunks once the training sample is drawn


@contextmanager
def writes_held():
    """Hold every write to the items and the chunks while the test looks, so what it sees cannot move on until it
    lets go: SQLite's write lock (the settings' transactions take it at BEGIN), PostgreSQL's SHARE lock on both
    tables."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Item._meta.db_table}, {ScoringChunk._meta.db_table} IN SHARE MODE")
        yield


def open_items(project):
    return Item.objects.filter(project=project, status__in=OPEN_STATUSES)


def half_written(scoring_round: ScoringRound) -> tuple[ScoringChunk, int] | None:
    """A running chunk that has written some of its items' scores and not all, and how many of its range are
    scored by this round."""
    for chunk in ScoringChunk.objects.filter(scoring_round=scoring_round, state=ScoringChunk.State.RUNNING):
        in_range = open_items(scoring_round.project).filter(id__range=(chunk.first_id, chunk.last_id))
        scored = in_range.filter(scored_round=scoring_round.model_version).count()
        # The training step scored its own rows, some in this range: more than it has means a batch of the chunk.
        if scoring_round.training_size < scored < in_range.count():
            return chunk, scored
    return None


def kill_half_way(scoring_round: ScoringRound, victim: int) -> tuple[ScoringChunk, int]:
    """SIGKILL ``victim`` while a chunk is half written; that chunk and how many of its range were scored then."""

    def attempt():
        if half_written(scoring_round) is None:  # a look without locks first, to let the worker run
            now = ScoringRound.objects.get(pk=scoring_round.pk)
            if now.stage != ScoringRound.Stage.SCORE:
                pytest.fail(f"no chunk was seen half written before the round left scoring ({now.state}, "
                            f"{now.error or 'no error'}): make the chunks larger")
            return None
        with writes_held():
            found = half_written(scoring_round)
            if found:
                os.kill(victim, signal.SIGKILL)
        return found

    return wait_for(attempt, what="a chunk half written", interval=0.01)


@pytest.mark.parametrize("broker_kind,killed", [
    ("redis", "pool process"),
    ("redis", "whole worker"),
    ("filesystem", "pool process"),
    ("filesystem", "whole worker"),
])
def test_a_round_whose_chunk_is_killed_half_way_ends_with_every_item_scored_once(transactional_db, project, tmp_path,
                                                                                  broker_kind, killed):
    with transaction.atomic():
        make_pool(project, n_per_class=ITEMS_PER_LABEL)
    broker = Broker(broker_kind, tmp_path)
    queue = f"chunk-kill-{uuid.uuid4().hex[:8]}"
    # The round's own tasks (the chunks, the routing) go to the worker's default queue: this test's.
    env = worker_env(SELECTION_TRAIN_SIZE=str(TRAIN_SIZE), SELECTION_CHUNK_SIZE=str(CHUNK_SIZE),
                     CELERY_TASK_DEFAULT_QUEUE=queue, **broker.env)
    worker = start_worker(queue=queue, env=env, concurrency=1, pool="solo" if killed == "whole worker" else "prefork")
    second = None
    try:
        broker.send("annotation.selection_round", project.pk, True, queue=queue)
        scoring_round = wait_for(lambda: ScoringRound.objects.filter(project=project).exclude(
            state=ScoringRound.State.RUNNING, stage__in=[ScoringRound.Stage.NONE, ScoringRound.Stage.TRAIN]).first(),
            what="the round to train")
        assert scoring_round.stage == ScoringRound.Stage.SCORE and scoring_round.chunks >= 2, scoring_round.error
        victim = worker.pid if killed == "whole worker" else wait_for(lambda: children_of(worker.pid),
                                                                       what="the pool process")[0]
        chunk, scored_at_kill = kill_half_way(scoring_round, victim)
        if killed == "whole worker":
            worker.wait(timeout=10)
            if broker_kind == "redis":
                time.sleep(2.5)  # past the visibility timeout, so the next worker restores the message on start
            second = start_worker(queue=queue, env=env, concurrency=1)
        if broker_kind == "filesystem" and killed == "whole worker":
            others = ScoringChunk.objects.filter(scoring_round=scoring_round).exclude(pk=chunk.pk)
            wait_for(lambda: not others.exclude(state=ScoringChunk.State.DONE).exists(), what="the other chunks")
            lost = ScoringChunk.objects.get(pk=chunk.pk)
            # The known limit (RELIABILITY.md): the message went with the worker, and nobody runs the chunk again...
            assert (lost.state, lost.attempts) == (ScoringChunk.State.RUNNING, 1), "the transport redelivered it"
            # ...until a round request finds the round quiet (no chunk done) for longer than CHUNK_STALE_AFTER.
            ScoringRound.objects.filter(pk=scoring_round.pk).update(progress_at=F("progress_at") - CHUNK_STALE_AFTER)
            broker.send("annotation.selection_round", project.pk, queue=queue)
        wait_for(lambda: not ScoringRound.objects.filter(pk=scoring_round.pk, state=ScoringRound.State.RUNNING)
                 .exists(), what="the round to end")
    finally:
        log = stop_worker(worker) + (stop_worker(second) if second else "")

    scoring_round.refresh_from_db()
    assert scoring_round.state == ScoringRound.State.DONE, (scoring_round.error, log)
    assert scoring_round.metrics["chunked"] and scoring_round.stage == ""
    chunk.refresh_from_db()
    assert chunk.state == ScoringChunk.State.DONE and chunk.attempts >= 2
    assert not ScoringChunk.objects.filter(scoring_round=scoring_round).exclude(state=ScoringChunk.State.DONE).exists()
    # Every open item scored by this round (a first round writes every row) and its row written once: the run that
    # took the killed chunk over wrote only the rows the dead run had not (on PostgreSQL a batch the dead run had sent
    # may still land after its death, the server finishing a statement whose client is gone: the second run then
    # writes fewer, never more), and no other run wrote a row twice.
    opened = open_items(project)
    assert set(opened.values_list("scored_round", flat=True)) == {scoring_round.model_version}
    assert scoring_round.items_scored == opened.count() == 2 * ITEMS_PER_LABEL
    in_range = opened.filter(id__range=(chunk.first_id, chunk.last_id)).count()
    assert WRITE_BATCH <= scored_at_kill < in_range
    assert chunk.items_written <= in_range - scored_at_kill
    written_by_dead_run = scored_at_kill - (in_range - chunk.items_scored)  # the training set's rows in the range aside
    assert scoring_round.metrics["rows_written"] + written_by_dead_run <= opened.count()
    # Routed once, on this round's scores: the calibration sample to review, one Review row each.
    flagged = Item.objects.filter(project=project, is_calibration=True)
    assert flagged.exists() and set(flagged.values_list("status", flat=True)) == {Status.NEEDS_REVIEW}
    routed = Review.objects.filter(project=project, action=ReviewAction.ROUTE).order_by()
    assert not routed.values("item").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert routed.count() == Item.objects.filter(project=project, status=Status.NEEDS_REVIEW).count()
