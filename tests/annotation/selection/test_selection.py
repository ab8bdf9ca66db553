"""Selective annotation: scoring signals, routing rounds, the round lock, audits and the pause on bad audits."""
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotation import selection
from annotation.errors import ServiceError
from annotation.models import Item, Project, Review, ReviewAction, RoutingMode, ScoringRound, Status
from annotation.selection import rounds, scoring
from annotation.selection.estimates import accuracy_estimate, exact_interval
from annotation.selection.features import FeaturizerUnavailable, embedding_features, tfidf_features
from tests.support.factories import POSITIVE, corpus, flip, make_calibrated, make_item, make_pool


def test_exact_interval_matches_the_textbook_values():
    low, high = exact_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4439, 0.9748)
    assert exact_interval(0, 0) is None
    assert exact_interval(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    assert exact_interval(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))


@pytest.mark.parametrize("n, accuracy", [(30, 0.995), (50, 0.998), (100, 0.995), (200, 0.995), (400, 0.99)])
def test_exact_interval_covers_at_least_95_percent_where_auto_accepted_items_are(n, accuracy):
    # Exact coverage over every outcome of n checks (Wilson's is 86-92% at these points: bench/RESULTS.md).
    from scipy.stats import binom

    covered = sum(binom.pmf(k, n, accuracy) for k in range(n + 1)
                  if exact_interval(k, n)[0] <= accuracy <= exact_interval(k, n)[1])
    assert covered >= 0.95


def test_score_finds_labels_that_contradict_the_text():
    rows = corpus(30)
    X = tfidf_features([t for t, _ in rows])
    llm = [flip(g) if i < 4 else g for i, (_, g) in enumerate(rows)]
    llm[10] = None
    s = scoring.score(X, llm=llm, human=[None] * len(rows))
    wrong = s.ambiguity[:4]
    right = np.delete(s.ambiguity, [0, 1, 2, 3, 10])
    assert wrong.min() > np.percentile(right, 90)
    assert s.ambiguity[10] == 1.0
    assert not s.out_of_fold[10] and s.out_of_fold[0]
    assert not s.error_model


def test_score_learns_an_error_model_from_reviews():
    rows = corpus(30)
    X = tfidf_features([t for t, _ in rows])
    llm = [flip(g) if i % 6 == 0 else g for i, (_, g) in enumerate(rows)]
    human = [g if i < 40 else None for i, (_, g) in enumerate(rows)]
    s = scoring.score(X, llm=llm, human=human)
    assert s.error_model
    assert s.cv_human_agreement > 0.8


def test_a_random_check_is_learned_as_its_undecided_twin_but_teaches_the_error_model():
    """The committee learns a decided check with the LLM's label (so a check's person changes no item's committee
    probabilities, its own included); the error model learns what the person said."""
    rows = corpus(30)
    X = tfidf_features([t for t, _ in rows])
    llm = [flip(g) if i % 6 == 0 else g for i, (_, g) in enumerate(rows)]
    human = [g if i < 40 else None for i, (_, g) in enumerate(rows)]
    checks = np.array([i < 20 for i in range(len(rows))])
    undecided = [None if checks[i] else h for i, h in enumerate(human)]
    with_checks = scoring.score(X, llm=llm, human=human, checks=checks)
    twins = scoring.score(X, llm=llm, human=undecided)
    assert np.array_equal(with_checks.proba, twins.proba)
    assert np.array_equal(with_checks.suspect, twins.suspect)
    # The error model learned from the checks' outcomes (4 of its 7 errors are among them): with them it has the
    # examples it needs, without them it does not start.
    assert with_checks.error_model and not twins.error_model
    as_people = scoring.score(X, llm=llm, human=human)
    assert not np.array_equal(as_people.proba, twins.proba)


def test_folds_from_ids_stay_put_when_labels_change_and_items_join():
    rng = np.random.default_rng(3)
    ids = np.arange(1000, 1400)
    y = rng.integers(0, 3, size=len(ids))
    before = scoring.fold_splits(y, y, 5, seed=7, keys=ids)
    fold_before = np.empty(len(ids), int)
    for f, (_, held) in enumerate(before):
        fold_before[held] = f
        assert len(set(y[held])) == 3
    y2 = y.copy()
    y2[:40] = (y2[:40] + 1) % 3  # people corrected forty labels
    ids2, y2 = np.append(ids, [2000, 2001]), np.append(y2, [0, 1])  # and two items joined
    fold_after = np.empty(len(ids2), int)
    for f, (_, held) in enumerate(scoring.fold_splits(y2, y2, 5, seed=7, keys=ids2)):
        fold_after[held] = f
    assert np.array_equal(fold_after[:len(ids)], fold_before)
    # Stratified folds, redrawn on the changed labels with the same seed, moved most items.
    strat_before, strat_after = np.empty(len(ids), int), np.empty(len(ids2), int)
    for f, (_, held) in enumerate(scoring.fold_splits(y, y, 5, seed=7)):
        strat_before[held] = f
    for f, (_, held) in enumerate(scoring.fold_splits(y2, y2, 5, seed=7)):
        strat_after[held] = f
    assert (strat_after[:len(ids)] != strat_before).mean() > 0.5
    # A class too small for folds by id: stratified, so every fold's training set holds it.
    small = np.append(np.zeros(100, int), np.ones(12, int))
    for fit_rows, _ in scoring.fold_splits(small, small, 5, seed=7, keys=np.arange(len(small))):
        assert set(small[fit_rows]) == {0, 1}


def test_confident_learning_flags_contradicted_llm_labels_but_never_a_persons():
    rows = corpus(30)
    X = tfidf_features([t for t, _ in rows])
    llm = [flip(g) if i < 4 else g for i, (_, g) in enumerate(rows)]
    human = [None] * len(rows)
    human[4], human[5] = flip(rows[4][1]), flip(rows[5][1])  # a person's label stands even against the text
    s = scoring.score(X, llm=llm, human=human)
    assert s.suspect[:4].all()
    assert not s.suspect[4:6].any()
    assert s.suspect[6:].mean() < 0.1


def test_suspect_llm_labels_are_not_trained_on(monkeypatch):
    # Trained without the flagged labels, the committee separates the LLM's right labels from its wrong ones better.
    rows = corpus(30)
    X = tfidf_features([t for t, _ in rows])
    wrong = np.arange(len(rows)) % 7 == 0
    llm = [flip(g) if wrong[i] else g for i, (_, g) in enumerate(rows)]

    def separation():
        s = scoring.score(X, llm=llm, human=[None] * len(rows))
        return s, s.p_llm_label[~wrong].mean() - s.p_llm_label[wrong].mean()

    pruned, with_pruning = separation()
    monkeypatch.setattr(scoring, "SUSPECT_WEIGHT", 1.0)
    _, without = separation()
    assert pruned.suspect[wrong].all()
    assert with_pruning > without + 0.05


@pytest.mark.parametrize("dense", [False, True])
def test_nb_logistic_regression_learns_words_of_each_class(dense):
    words = ["great", "awful", "plot", "fine"]
    texts = [f"{words[i % 3]} film {i}" for i in range(60)]
    labels = np.array(["good", "bad", "neutral"])[np.arange(60) % 3]
    X = tfidf_features(texts)
    X = X.toarray() if dense else X
    model = scoring.NBLogisticRegression(random_state=0).fit(X, labels)
    proba = model.predict_proba(X)
    assert proba.shape == (60, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (model.predict(X) == labels).mean() == 1.0
    binary = scoring.NBLogisticRegression(random_state=0).fit(X[:40], labels[:40] == "good")
    assert (binary.predict(X[:40]) == (labels[:40] == "good")).all()


def test_score_needs_two_labels():
    X = tfidf_features(["one", "two", "three"] * 5)
    assert scoring.score(X, llm=["a"] * 15, human=[None] * 15) is None


def test_embedding_featurizer_refuses_a_missing_model(tmp_path):
    with pytest.raises(FeaturizerUnavailable, match="not a folder"):
        embedding_features(["x"], str(tmp_path / "nothing-here"))


def test_the_reason_quotes_the_numbers_the_details_panel_stores():
    """0.064996 is 0.06 to two decimals, but the panel stores 0.065 (four) and shows 0.07: the sentence quotes the
    stored number, so the two agree."""
    from types import SimpleNamespace

    scores = SimpleNamespace(model_labels=["positive"], proba=np.array([[0.935004, 0.064996]]),
                             ambiguity=np.array([0.064996]), p_llm_label=np.array([0.935004]),
                             least_confident=np.array([0.065]), margin=np.array([0.87]), entropy=np.array([0.2]),
                             vote_entropy=np.array([0.0]), kl_max=np.array([0.0]), labels=["positive", "negative"],
                             out_of_fold=np.array([True]))
    row = rounds._Row(id=1, status=Status.PROPOSED, version=1, proposed="positive", human=None, llm_confidence=None,
                      is_audit=False, is_calibration=False, busy=False)
    stored = rounds.score_signals(scores, 0, row)["p_llm_wrong"]
    reason = rounds.route_reason(row, rounds._view(scores, 0), audit=False, to_review=False)
    assert reason.endswith(f"estimated chance the LLM is wrong {stored:.2f}") and stored == 0.065


def test_a_round_routes_the_llm_errors_to_review(project):
    items = make_pool(project)
    # 20 calibration items are decided: the budget's 26 of 80 items leaves 6 for the pool.
    make_calibrated(project, routing_mode=RoutingMode.BUDGET, review_budget=0.325, audit_rate=0.0)
    scoring_round = selection.selection_run_round(project=project)
    assert scoring_round.state == ScoringRound.State.DONE
    by_id = {i.pk: i for i in Item.objects.filter(project=project, is_calibration=False)}
    queued = {pk for pk, i in by_id.items() if i.status == Status.NEEDS_REVIEW}
    assert {i.pk for i in items[:5]} <= queued
    assert len(queued) == 6
    assert all(by_id[i.pk].status == Status.AUTO_ACCEPTED for i in items[10:] if i.pk not in queued)
    assert by_id[items[4].pk].route_reason == "to review: the LLM gave no label"
    for item in by_id.values():
        if item.pk == items[4].pk:
            continue
        # The sentence is built from the item's own signals: where it went, who said what, and the estimate.
        where = "to review" if item.status == Status.NEEDS_REVIEW else "auto-accepted"
        llm = item.proposed_labels[0]
        said = (f"LLM and model agree on '{llm}'" if item.model_label == llm
                else f"model predicts '{item.model_label}' ({item.model_scores[f'p({item.model_label})']:.2f})"
                     f", LLM said '{llm}'")
        assert item.route_reason.startswith(f"{where}: {said}; estimated chance the LLM is wrong "
                                            f"{item.model_scores['p_llm_wrong']:.2f}"), item.route_reason
    first = by_id[items[0].pk]
    assert first.scored_round == scoring_round.model_version
    assert first.model_label == "positive" or first.model_label == "negative"
    assert 0 <= first.model_scores["p_llm_label"] <= 1 and first.model_scores["out_of_fold"] is True
    assert Review.objects.filter(project=project, action=ReviewAction.ROUTE).count() == 6
    assert Review.objects.filter(project=project, action=ReviewAction.AUTO_ACCEPT).count() == 54
    assert scoring_round.items_scored == 80 and scoring_round.training_size == 79
    assert scoring_round.metrics["routing"]["to_review"] == 6


def test_a_second_round_logs_only_items_that_move(project):
    make_pool(project)
    make_calibrated(project, routing_mode=RoutingMode.BUDGET)
    selection.selection_run_round(project=project)
    logged = Review.objects.count()
    second = selection.selection_run_round(project=project)
    assert second.model_version == 2
    moved = second.metrics["routing"]
    assert Review.objects.count() - logged == moved["to_review"] + moved["to_auto_accept"] + moved["back_to_review"] \
        + moved["audits"]


def test_audit_sample_goes_to_review_flagged(project):
    make_pool(project)
    make_calibrated(project, routing_mode=RoutingMode.BUDGET, review_budget=0.0, audit_rate=1.0)
    selection.selection_run_round(project=project)
    audits = Item.objects.filter(project=project, is_audit=True)
    assert audits.count() == 59  # every labelled item; the abstained one is an ordinary review
    assert set(audits.values_list("status", flat=True)) == {Status.NEEDS_REVIEW}
    assert Review.objects.filter(project=project, is_audit=True, action=ReviewAction.ROUTE).count() == 59
    assert audits.first().route_reason.startswith("to review: audit sample")


def test_audit_draw_is_stable_and_near_the_rate(project):
    draws = [rounds.audit_draw(project, i) for i in range(4000)]
    assert draws == [rounds.audit_draw(project, i) for i in range(4000)]
    assert 0.04 < np.mean(np.array(draws) < 0.05) < 0.06


def test_threshold_mode_pulls_auto_accepted_items_back(project):
    make_pool(project)
    make_calibrated(project, routing_mode=RoutingMode.THRESHOLD, review_threshold=1.0, audit_rate=0.0)
    selection.selection_run_round(project=project)
    assert Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).count() == 59
    Project.objects.filter(pk=project.pk).update(review_threshold=0.0)
    project.refresh_from_db()
    second = selection.selection_run_round(project=project)
    assert second.metrics["routing"]["back_to_review"] == 59
    assert Item.objects.filter(project=project, status=Status.NEEDS_REVIEW).count() == 60


def test_confident_unclaimed_review_items_are_auto_accepted_but_held_ones_stay(project, annotator):
    items = make_pool(project)
    Item.objects.filter(project=project).update(status=Status.NEEDS_REVIEW)
    Item.objects.filter(pk=items[20].pk).update(claimed_by=annotator,
                                                lease_expires_at=timezone.now() + timedelta(minutes=5))
    make_calibrated(project, routing_mode=RoutingMode.BUDGET, review_budget=0.325, audit_rate=0.0)
    scoring_round = selection.selection_run_round(project=project)
    assert Item.objects.get(pk=items[20].pk).status == Status.NEEDS_REVIEW
    assert Item.objects.get(pk=items[21].pk).status == Status.AUTO_ACCEPTED
    assert scoring_round.metrics["routing"]["held"] >= 1


def test_an_item_changed_while_the_model_trains_is_not_overwritten(project, monkeypatch):
    items = make_pool(project)
    real_score = scoring.score

    def score_while_a_reviewer_edits(*args, **kwargs):
        Item.objects.filter(pk=items[30].pk).update(version=99, status=Status.NEEDS_REVIEW, route_reason="edited")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(scoring, "score", score_while_a_reviewer_edits)
    scoring_round = selection.selection_run_round(project=project)
    item = Item.objects.get(pk=items[30].pk)
    assert (item.version, item.status, item.route_reason) == (99, Status.NEEDS_REVIEW, "edited")
    assert scoring_round.metrics["routing"]["skipped_changed"] == 1


def test_only_one_round_runs_per_project(project):
    make_pool(project)
    ScoringRound.objects.create(project=project, model_version=1)
    assert selection.selection_run_round(project=project) is None


def test_a_stale_running_round_is_marked_failed(project):
    make_pool(project)
    stale = ScoringRound.objects.create(project=project, model_version=1)
    ScoringRound.objects.filter(pk=stale.pk).update(started_at=timezone.now() - timedelta(hours=2))
    assert selection.selection_run_round(project=project).model_version == 2
    assert ScoringRound.objects.get(pk=stale.pk).state == ScoringRound.State.FAILED


def test_a_failing_round_is_recorded(project, monkeypatch):
    make_pool(project)

    def broken(texts):
        raise FeaturizerUnavailable("no model here")

    monkeypatch.setattr(rounds, "featurize", broken)
    with pytest.raises(FeaturizerUnavailable):
        selection.selection_run_round(project=project)
    failed = ScoringRound.objects.get(project=project)
    assert failed.state == ScoringRound.State.FAILED and "no model here" in failed.error


def test_too_few_labels_still_send_abstentions_to_review(project):
    make_item(project, "no label here", status=Status.PROPOSED, proposed=())
    make_item(project, "one label", status=Status.PROPOSED, proposed=("positive",))
    scoring_round = selection.selection_run_round(project=project)
    assert scoring_round.items_scored == 0 and scoring_round.metrics["note"]
    assert list(Item.objects.filter(project=project).values_list("status", flat=True)) == [
        Status.NEEDS_REVIEW, Status.PROPOSED]


def test_multi_label_items_are_scored_as_label_sets(lead):
    from tests.support.factories import make_project

    project = make_project(lead=lead, labels=("a", "b", "c"), multi_label=True)
    for i in range(40):
        make_item(project, f"alpha beta {i}" if i % 2 else f"gamma delta {i}", status=Status.PROPOSED,
                  proposed=("b", "a") if i % 2 else ("c",))
    selection.selection_run_round(project=project)
    labels = set(Item.objects.filter(project=project).values_list("model_label", flat=True))
    assert labels == {"a|b", "c"}


def finish_audits(project, *, right, wrong):
    """Audited items a person decided: ``right`` kept the LLM's label, ``wrong`` did not."""
    now = timezone.now()
    for i in range(right + wrong):
        make_item(project, f"audited {i}", status=Status.ACCEPTED, proposed=("positive",), is_audit=True,
                  final_labels=["positive"] if i < right else ["negative"], reviewed_at=now)


def test_bad_audits_take_auto_accepts_back_to_review_and_never_pause_by_themselves(project, lead):
    make_pool(project)
    make_calibrated(project, n=40, target_accuracy=0.9, audit_rate=0.0)
    selection.selection_run_round(project=project)
    assert Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()
    before = Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).count()
    # Audits of clear-looking texts (the range auto-accepted) find the LLM wrong on 15 of 40.
    now = timezone.now()
    for i in range(40):
        make_item(project, f"{POSITIVE[i % len(POSITIVE)]} audited {i}", status=Status.ACCEPTED, proposed=("positive",),
                  is_audit=True, final_labels=["negative"] if i < 15 else ["positive"], reviewed_at=now)
    selection.selection_run_round(project=project)
    project.refresh_from_db()
    assert not project.auto_accept_paused  # no pause: the region shrinks instead
    assert Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).count() < before
    back = Review.objects.filter(project=project, action=ReviewAction.ROUTE, before__status=Status.AUTO_ACCEPTED)
    assert back.exists()


def test_keeping_the_pause_records_who_decided(project, lead):
    Project.objects.filter(pk=project.pk).update(auto_accept_paused=True, auto_accept_paused_reason="Audits...")
    project.refresh_from_db()
    selection.auto_accept_decide(project=project, user=lead, resume=False)
    project.refresh_from_db()
    assert project.auto_accept_paused and "lead kept it paused" in project.auto_accept_paused_reason


def test_there_is_nothing_to_decide_when_auto_accept_runs(project, lead):
    with pytest.raises(ServiceError, match="not paused"):
        selection.auto_accept_decide(project=project, user=lead, resume=True)


def test_accuracy_estimate_combines_reviewed_and_audited(project):
    finish_audits(project, right=45, wrong=5)
    for i in range(950):
        make_item(project, f"auto {i}", status=Status.AUTO_ACCEPTED)
    estimate = accuracy_estimate(project=project)
    assert estimate.auto_accepted_accuracy == 0.9
    low, high = estimate.auto_accepted_interval
    assert low < 0.9 < high
    assert estimate.human_reviewed == 50 and estimate.auto_accepted == 950
    assert estimate.dataset_accuracy == pytest.approx((50 + 950 * 0.9) / 1000)
    d_low, d_high = estimate.dataset_interval
    assert d_low == pytest.approx((50 + 950 * low) / 1000) and d_high == pytest.approx((50 + 950 * high) / 1000)


@pytest.mark.parametrize("calibration,kind,right,n", [
    (60, "audits", 38, 40),  # 40 audits in the range: they alone (2 of them wrong)
    (80, "random checks", 90, 100),  # 20 audits: too few, every check in the range counts
    (None, "random checks", 90, 100),  # a state written before the split: every check
])
def test_the_shown_estimate_counts_the_audits_alone_once_there_are_enough(project, calibration, kind, right, n):
    region = {"checks": 100, "wrong": 10, "reach": 0.2}
    if calibration is not None:
        region |= {"calibration_checks": calibration, "calibration_wrong": 8}
    Project.objects.filter(pk=project.pk).update(routing_state={"phase": "not_yet", "target": 0.98, "region": region})
    project.refresh_from_db()
    checks = accuracy_estimate(project=project).audits
    assert (checks.kind, checks.successes, checks.n) == (kind, right, n)


def test_rejected_audits_count_as_llm_errors(project):
    make_item(project, "rejected audit", status=Status.REJECTED, proposed=("positive",), is_audit=True)
    assert selection.audit_proportion(project=project).successes == 0


def human_review(item, user, label):
    from annotation.items.services import item_transition

    item.refresh_from_db()
    item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=user, final_labels=[label])


def test_a_round_is_scheduled_after_retrain_every_reviews(project, annotator, monkeypatch,
                                                          django_capture_on_commit_callbacks):
    from annotation.selection import tasks

    sent = []
    monkeypatch.setattr(tasks.selection_round, "delay", lambda *args, **kwargs: sent.append((args, kwargs)))
    make_pool(project)
    Project.objects.filter(pk=project.pk).update(retrain_every=3)
    selection.selection_run_round(project=project)
    queued = list(Item.objects.filter(project=project, status=Status.NEEDS_REVIEW))
    with django_capture_on_commit_callbacks(execute=True):
        for item in queued[:2]:
            human_review(item, annotator, item.extra["gold"])
            assert selection.selection_maybe_schedule(project.pk) is False
        human_review(queued[2], annotator, queued[2].extra["gold"])
        assert selection.selection_maybe_schedule(project.pk) is True
    assert sent == [((project.pk,), {"force": False})]


def test_the_task_runs_a_due_round_and_skips_one_that_is_not(project, annotator):
    from annotation.selection.tasks import selection_round

    make_pool(project)
    assert selection_round.run(project.pk) is None
    assert selection_round.run(project.pk, force=True) is not None
    assert ScoringRound.objects.filter(project=project, state=ScoringRound.State.DONE).count() == 1


def test_the_shown_estimate_counts_each_zone_of_the_range_on_its_own_checks(project):
    zones = [{"items": 900, "checks": 60, "wrong": 1, "calibration_checks": 20, "calibration_wrong": 1},
             {"items": 100, "checks": 5, "wrong": 2, "calibration_checks": 5, "calibration_wrong": 2}]
    Project.objects.filter(pk=project.pk).update(routing_state={
        "phase": "not_yet", "target": 0.98, "region": {"checks": 65, "wrong": 3, "reach": 0.3, "zones": zones}})
    project.refresh_from_db()
    checks = accuracy_estimate(project=project).audits
    # The first zone by its 40 audits alone (none wrong), the second by its 5 calibration items (2 wrong).
    assert (checks.kind, checks.successes, checks.n) == ("random checks", 43, 45)
    assert checks.value == pytest.approx((900 * 1.0 + 100 * 3 / 5) / 1000)
    # Each zone's exact interval at 97.5% (two zones), weighted by its items.
    first, second = exact_interval(40, 40, 0.975), exact_interval(3, 5, 0.975)
    assert checks.interval == pytest.approx(((900 * first[0] + 100 * second[0]) / 1000,
                                             (900 * first[1] + 100 * second[1]) / 1000))
    # One zone (nothing waits): the region's checks as before.
    Project.objects.filter(pk=project.pk).update(routing_state={
        "phase": "not_yet", "target": 0.98, "region": {"checks": 65, "wrong": 3, "reach": 0.3, "zones": zones[:1]}})
    project.refresh_from_db()
    checks = accuracy_estimate(project=project).audits
    assert (checks.kind, checks.successes, checks.n, checks.zones) == ("audits", 40, 40, ())
