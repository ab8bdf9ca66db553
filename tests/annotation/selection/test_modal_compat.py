"""The modAL functions annotation/selection/scoring.py calls work with the pinned scikit-learn and numpy; what is
broken is asserted too, so an upgrade that fixes it (or breaks what we use) is noticed."""
import numpy as np
import pytest
import sklearn
from modAL.batch import uncertainty_batch_sampling
from modAL.disagreement import KL_max_disagreement, vote_entropy
from modAL.models import ActiveLearner, Committee
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB

from annotation.selection.scoring import _committee, _FixedProba

X = np.array([[3.0, 0.0], [2.5, 0.2], [0.1, 3.0], [0.0, 2.2], [1.0, 1.0], [1.2, 0.9]])
Y = np.array([0, 0, 1, 1, 0, 1])


def fitted():
    return [LogisticRegression().fit(X, Y), ComplementNB().fit(X, Y)]


def test_uncertainty_measures_work_on_a_fitted_sklearn_classifier():
    clf = LogisticRegression().fit(X, Y)
    proba = clf.predict_proba(X)
    assert np.allclose(classifier_uncertainty(clf, X), 1 - proba.max(axis=1))
    top2 = np.sort(proba, axis=1)
    assert np.allclose(classifier_margin(clf, X), top2[:, -1] - top2[:, -2])
    assert np.allclose(classifier_entropy(clf, X), -(proba * np.log(proba)).sum(axis=1))


def test_uncertainty_measures_accept_precomputed_out_of_fold_probabilities():
    proba = np.array([[0.9, 0.1], [0.5, 0.5]])
    rows = np.arange(2).reshape(-1, 1)
    assert np.allclose(classifier_uncertainty(_FixedProba(proba), rows), [0.1, 0.5])
    assert np.allclose(classifier_margin(_FixedProba(proba), rows), [0.8, 0.0])


def test_committee_of_prefitted_sklearn_models_gives_disagreement():
    committee = _committee(fitted())
    assert list(committee.classes_) == [0, 1]
    assert committee.predict_proba(X).shape == (6, 2)
    ve = vote_entropy(committee, X)
    kl = KL_max_disagreement(committee, X)
    assert ve.shape == kl.shape == (6,)
    assert (ve >= 0).all() and (kl >= 0).all()
    assert ve[0] == 0.0  # both members say class 0 for the clearest row


def test_committee_handles_a_member_missing_a_class():
    partial = LogisticRegression().fit(X[:4], np.array([0, 0, 1, 2]))
    committee = Committee(learner_list=[ActiveLearner(estimator=partial),
                                        ActiveLearner(estimator=LogisticRegression().fit(X, Y))])
    assert committee.predict_proba(X).shape == (6, 3)


def test_active_learner_teach_is_broken_on_this_scikit_learn():
    """modAL#196: ActiveLearner passes force_all_finite to check_X_y, removed in scikit-learn 1.8. We never call it."""
    assert tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)
    learner = ActiveLearner(estimator=LogisticRegression())
    with pytest.raises(TypeError, match="force_all_finite"):
        learner.teach(X, Y)


def test_uncertainty_batch_sampling_needs_a_modal_learner_not_a_bare_estimator():
    """Why scoring.py ranks by its own combined score instead of calling modAL.batch on the classifier."""
    with pytest.raises(AttributeError, match="on_transformed"):
        uncertainty_batch_sampling(LogisticRegression().fit(X, Y), X, n_instances=2)


def test_our_array_vote_entropy_is_modals():
    from annotation.selection.scoring import vote_entropy as ours

    rng = np.random.default_rng(0)
    X3, Y3 = rng.random((200, 4)), rng.integers(0, 3, 200)
    committee = _committee([LogisticRegression().fit(X3, Y3), ComplementNB().fit(X3, Y3),
                            LogisticRegression(C=0.01).fit(X3[:50], Y3[:50])])
    expected = vote_entropy(committee, X3)
    assert expected.max() > 0 and len(set(np.round(expected, 6))) >= 2  # the members disagree somewhere
    assert np.allclose(ours(committee, X3), expected)

