"""Chunked rounds (issue 19): a project above SELECTION_TRAIN_SIZE trains on a bounded sample, is scored in chunks any
worker runs, and is routed once on this round's scores. Sizes are shrunk so that 120 items make five chunks."""
from contextlib import contextmanager

import pytest
from django.urls import reverse

from annotation.models import Item, Project, Review, ReviewAction, ScoringChunk, ScoringModel, ScoringRound, Status
from annotation.selection import chunks, selection_run_round, tasks
from annotation.selection.rounds import OPEN_STATUSES
from synthstudio.celery import app as celery_app
from tests.support.factories import make_pool, review_with_gold


@contextmanager
def eager():
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


@pytest.fixture
def small_chunks(settings):
    settings.SELECTION_TRAIN_SIZE = 40
    settings.SELECTION_CHUNK_SIZE = 20


def policy(project, **fields):
    Project.objects.filter(pk=project.pk).update(**fields)
    project.refresh_from_db()


def open_items(project):
    return Item.objects.filter(project=project, status__in=OPEN_STATUSES)


def test_a_large_project_is_scored_in_chunks_each_open_item_once(project, small_chunks):
    make_pool(project, n_per_class=60)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    scoring_round = selection_run_round(project=project)
    assert scoring_round.state == ScoringRound.State.DONE and scoring_round.stage == ""
    assert scoring_round.metrics["chunked"] and scoring_round.chunks >= 3
    # Trained on the sample only: 40 drawn over two labels x one cohort, at least MIN_PER_STRATUM of each if there
    # are that many; every open item scored by this round exactly once, by the training step or one chunk.
    assert scoring_round.training_size < open_items(project).count()
    assert set(open_items(project).values_list("scored_round", flat=True)) == {scoring_round.model_version}
    assert scoring_round.items_scored == open_items(project).count() == 120
    assert ScoringChunk.objects.filter(scoring_round=scoring_round).exclude(state="done").count() == 0
    assert not ScoringModel.objects.exists()  # the stored model goes with the round's end
    # Routed as a one-process round routes: the calibration sample first, nothing auto-accepted.
    flagged = Item.objects.filter(project=project, is_calibration=True)
    assert flagged.count() == 35 and set(flagged.values_list("status", flat=True)) == {Status.NEEDS_REVIEW}
    assert not Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()
    assert Project.objects.get(pk=project.pk).routing_state["phase"] == "calibrating"
    waiting = Item.objects.filter(project=project, status=Status.PROPOSED)
    assert {i.route_reason for i in waiting} == {
        "waiting: nothing is auto-accepted until the calibration sample is reviewed (0 of 35 done)"}
    assert all(i.model_scores.get("p_llm_wrong") is not None for i in open_items(project).exclude(proposed_labels=[]))


def test_after_calibration_a_chunked_round_auto_accepts_under_the_bound_with_a_review_row_each(
        project, annotator, small_chunks):
    make_pool(project, n_per_class=60)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, Item.objects.filter(project=project, is_calibration=True))
    scoring_round = selection_run_round(project=project)
    assert scoring_round.metrics["chunked"]
    auto = Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED)
    assert auto.count() > 0
    assert Review.objects.filter(project=project, action=ReviewAction.AUTO_ACCEPT).count() == auto.count()
    assert all(i.route_reason.startswith("auto-accepted: ") for i in auto)
    assert all(i.route_reason.startswith("to review: ") for i in Item.objects.filter(
        project=project, status=Status.NEEDS_REVIEW))
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["version"] == scoring_round.model_version and state["phase"] in ("not_yet", "reached")
    # The round's counts add up: what moved, plus what stayed, is every open item.
    routing = scoring_round.metrics["routing"]
    assert routing["to_auto_accept"] == auto.count()


def test_the_celery_task_fans_chunks_out_and_the_last_one_routes(project, small_chunks,
                                                                 django_capture_on_commit_callbacks):
    make_pool(project, n_per_class=60)
    with eager(), django_capture_on_commit_callbacks(execute=True):
        tasks.selection_round(project.pk, force=True)
    scoring_round = ScoringRound.objects.get(project=project)
    assert scoring_round.state == ScoringRound.State.DONE, scoring_round.error
    assert scoring_round.metrics["chunked"] and scoring_round.items_scored == 120
    assert Item.objects.filter(project=project, is_calibration=True).exists()


def test_a_chunk_run_again_after_its_worker_died_writes_only_what_is_left(project, small_chunks,
                                                                          django_capture_on_commit_callbacks):
    make_pool(project, n_per_class=60)
    with django_capture_on_commit_callbacks(execute=False):  # train only: the chunks are not sent
        scoring_round = selection_run_round(project=project, fan_out=True)
    assert scoring_round.state == ScoringRound.State.RUNNING and scoring_round.stage == ScoringRound.Stage.SCORE
    first = ScoringChunk.objects.get(scoring_round=scoring_round, index=0)
    # A run that died half-way: it claimed the chunk and wrote some of its rows.
    featurizer, model, trained = chunks._model(scoring_round.pk)
    rows, texts = chunks._chunk_rows(project_id=project.pk, first=first.first_id, last=first.last_id, trained=trained)
    half = len(rows) // 2
    scores = model.score(chunks.featurize(texts[:half], featurizer), llm=[r.proposed for r in rows[:half]])
    assert chunks._write_scores(version=scoring_round.model_version, rows=rows[:half], scores=scores) == half
    ScoringChunk.objects.filter(pk=first.pk).update(state=ScoringChunk.State.RUNNING, attempts=1)
    # The broker hands it on: the second run scores the whole chunk again and writes the other half only.
    assert chunks.chunk_run(round_id=scoring_round.pk, index=0, queue_route=False) == len(rows)
    first.refresh_from_db()
    assert (first.items_scored, first.items_written, first.attempts) == (len(rows), len(rows) - half, 2)
    for index in range(1, scoring_round.chunks):
        chunks.chunk_run(round_id=scoring_round.pk, index=index, queue_route=False)
    assert chunks.chunk_run(round_id=scoring_round.pk, index=0, queue_route=False) is None  # done: nothing to do
    finished = chunks.round_route(round_id=scoring_round.pk)
    assert finished.state == ScoringRound.State.DONE
    assert finished.items_scored == open_items(project).count() == 120
    assert set(open_items(project).values_list("scored_round", flat=True)) == {scoring_round.model_version}


def test_the_next_round_rewrites_only_the_rows_whose_shown_scores_change(project, annotator, small_chunks):
    make_pool(project, n_per_class=60)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    first = selection_run_round(project=project)
    assert first.metrics["rows_written"] == 120
    second = selection_run_round(project=project)  # nothing new: the same sample, so the same scores
    assert second.items_scored == 120 and second.metrics["rows_written"] == 0
    shown = set(open_items(project).values_list("scored_round", flat=True))
    assert shown == {first.model_version}  # what each row shows came from the round that last changed it


def test_an_item_a_reviewer_holds_is_neither_rescored_nor_moved(project, annotator, small_chunks):
    from annotation.queue import services as queue

    items = make_pool(project, n_per_class=60)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    Item.objects.filter(pk=items[10].pk).update(status=Status.NEEDS_REVIEW)
    claimed = queue.queue_claim(project=project, user=annotator)
    before = Item.objects.get(pk=claimed.pk)
    scoring_round = selection_run_round(project=project)
    after = Item.objects.get(pk=claimed.pk)
    assert after.scored_round != scoring_round.model_version and after.version == before.version
    assert after.status == before.status and after.claimed_by_id == annotator.pk


def test_no_second_round_starts_while_a_chunked_round_waits_on_its_chunks(project, small_chunks, client, lead,
                                                                          django_capture_on_commit_callbacks):
    make_pool(project, n_per_class=60)
    with django_capture_on_commit_callbacks(execute=False):
        first = selection_run_round(project=project, fan_out=True)
    assert first.state == ScoringRound.State.RUNNING
    assert selection_run_round(project=project) is None
    chunks.chunk_run(round_id=first.pk, index=0, queue_route=False)
    client.force_login(lead)
    body = client.get(reverse("routing", args=[project.id])).content.decode()
    assert f"A scoring round is running\n    (scoring: 1 of {first.chunks} chunks done)" in body


def quiet_for(scoring_round, delta):
    """The round's last sign of life ``delta`` ago."""
    from django.utils import timezone

    ScoringRound.objects.filter(pk=scoring_round.pk).update(progress_at=timezone.now() - delta)


def test_lost_chunks_pending_or_running_are_sent_again_once_the_round_is_quiet(project, small_chunks, monkeypatch,
                                                                              django_capture_on_commit_callbacks):
    from datetime import timedelta

    make_pool(project, n_per_class=60)
    with django_capture_on_commit_callbacks(execute=False):  # the group's message is lost: every chunk pending
        scoring_round = selection_run_round(project=project, fan_out=True)
    chunks.chunk_run(round_id=scoring_round.pk, index=0, queue_route=False)
    ScoringChunk.objects.filter(scoring_round=scoring_round, index=1).update(state=ScoringChunk.State.RUNNING,
                                                                             attempts=1)
    sent = []
    monkeypatch.setattr(chunks, "_send", lambda round_id, indices: sent.append((round_id, list(indices))))
    with django_capture_on_commit_callbacks(execute=True):
        assert chunks.round_resume(project_id=project.pk) == 0  # a chunk just finished: the round is alive
        quiet_for(scoring_round, chunks.CHUNK_STALE_AFTER + timedelta(seconds=1))
        assert chunks.round_resume(project_id=project.pk) == scoring_round.chunks - 1
    assert sent == [(scoring_round.pk, list(range(1, scoring_round.chunks)))]
    # Every chunk done, but the routing task lost: sent again once the round has been quiet long enough.
    for index in range(1, scoring_round.chunks):
        chunks.chunk_run(round_id=scoring_round.pk, index=index, queue_route=False)
    routed = []
    monkeypatch.setattr(chunks, "_send_route", routed.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert chunks.round_resume(project_id=project.pk) == 0  # just finished: not lost
        quiet_for(scoring_round, chunks.CHUNK_STALE_AFTER + timedelta(seconds=1))
        assert chunks.round_resume(project_id=project.pk) == 1
    assert routed == [scoring_round.pk]
    assert chunks.round_route(round_id=scoring_round.pk).state == ScoringRound.State.DONE


def test_routing_is_claimed_once_and_a_dead_claim_is_taken_over(project, small_chunks,
                                                                django_capture_on_commit_callbacks):
    from datetime import timedelta

    make_pool(project, n_per_class=60)
    with django_capture_on_commit_callbacks(execute=False):
        scoring_round = selection_run_round(project=project, fan_out=True)
    for index in range(scoring_round.chunks):
        chunks.chunk_run(round_id=scoring_round.pk, index=index, queue_route=False)
    # A routing task claimed the step and died half-way (or is still at work): a second one sent meanwhile does
    # nothing, and round_resume does not send one while the claim is fresh.
    claimed = ScoringRound.objects.filter(pk=scoring_round.pk, stage=ScoringRound.Stage.ROUTE).update(
        stage=ScoringRound.Stage.ROUTING)
    assert claimed == 1
    assert chunks.round_route(round_id=scoring_round.pk) is None
    quiet_for(scoring_round, chunks.CHUNK_STALE_AFTER + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert chunks.round_resume(project_id=project.pk) == 0
    assert not sent
    assert chunks.round_route(round_id=scoring_round.pk) is None
    # Past ROUTE_STALE_AFTER the claim is taken for dead: the next routing task takes it over and finishes the round.
    quiet_for(scoring_round, chunks.ROUTE_STALE_AFTER + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert chunks.round_resume(project_id=project.pk) == 1
    assert len(sent) == 1
    assert chunks.round_route(round_id=scoring_round.pk).state == ScoringRound.State.DONE
    assert chunks.round_route(round_id=scoring_round.pk) is None
    assert set(open_items(project).values_list("scored_round", flat=True)) == {scoring_round.model_version}


def test_a_long_round_that_reports_is_kept_and_a_silent_one_is_failed_with_its_model_dropped(
        project, small_chunks, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from annotation.selection.rounds import ROUND_STALE_AFTER

    make_pool(project, n_per_class=60)
    with django_capture_on_commit_callbacks(execute=False):
        scoring_round = selection_run_round(project=project, fan_out=True)
    # Started two hours ago, a chunk done a minute ago: alive, and no second round starts.
    ScoringRound.objects.filter(pk=scoring_round.pk).update(started_at=timezone.now() - timedelta(hours=2))
    chunks.chunk_run(round_id=scoring_round.pk, index=0, queue_route=False)
    quiet_for(scoring_round, timedelta(minutes=1))
    assert selection_run_round(project=project, fan_out=True) is None
    assert ScoringRound.objects.get(pk=scoring_round.pk).state == ScoringRound.State.RUNNING
    # Silent for longer than ROUND_STALE_AFTER: the next claim fails it, drops its model, and runs a new round.
    quiet_for(scoring_round, ROUND_STALE_AFTER + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False):
        fresh = selection_run_round(project=project, fan_out=True)
    dead = ScoringRound.objects.get(pk=scoring_round.pk)
    assert dead.state == ScoringRound.State.FAILED and dead.stage == "" and "stopped reporting" in dead.error
    assert not ScoringModel.objects.filter(scoring_round=dead).exists()
    assert fresh is not None and fresh.pk != dead.pk
    # A chunk of the dead round delivered late does nothing.
    assert chunks.chunk_run(round_id=dead.pk, index=1) is None


def test_a_project_at_the_training_size_runs_in_one_process(project, settings):
    settings.SELECTION_TRAIN_SIZE = 200
    make_pool(project, n_per_class=60)
    scoring_round = selection_run_round(project=project)
    assert scoring_round.chunks == 0 and "chunked" not in scoring_round.metrics
    assert not ScoringChunk.objects.exists()


def test_values_by_id_finds_each_wanted_id_and_marks_the_missing():
    import numpy as np

    from annotation.selection.rounds import values_by_id

    got = values_by_id(np.array([30, 10, 20]), np.array([0.3, 0.1, 0.2]), np.array([20, 5, 30, 40, 10]))
    assert np.allclose(got[[0, 2, 4]], [0.2, 0.3, 0.1]) and np.isnan(got[[1, 3]]).all()
    assert np.isnan(values_by_id(np.zeros(0, np.int64), np.zeros(0), np.array([1]))).all()


def test_two_routing_tasks_at_the_same_moment_route_once(transactional_db, project, small_chunks, monkeypatch):
    from collections import Counter

    from tests.support.concurrency import at_once

    make_pool(project, n_per_class=60)
    monkeypatch.setattr(chunks, "_send", lambda round_id, indices: None)  # the chunks are run here, below
    scoring_round = selection_run_round(project=project, fan_out=True)
    for index in range(scoring_round.chunks):
        chunks.chunk_run(round_id=scoring_round.pk, index=index, queue_route=False)
    before = Review.objects.filter(project=project, action=ReviewAction.ROUTE).count()
    results = at_once(lambda: chunks.round_route(round_id=scoring_round.pk),
                      lambda: chunks.round_route(round_id=scoring_round.pk))
    assert sorted(r is None for r in results) == [False, True]  # one routed, the other found the step claimed
    assert ScoringRound.objects.get(pk=scoring_round.pk).state == ScoringRound.State.DONE
    routed = Review.objects.filter(project=project, action=ReviewAction.ROUTE).values_list("item_id", flat=True)
    assert routed.count() > before  # the calibration sample went to people, one Review row each
    assert max(Counter(routed).values()) == 1
