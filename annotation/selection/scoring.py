"""The selection model: how likely is the LLM's label of each item to be wrong? Pure numpy/scikit-learn, no database.

How the signals combine
-----------------------
1. **Classifier.** A committee of linear models is trained on every item with a label: items a person accepted carry
   their final label with weight ``HUMAN_WEIGHT``; the other items carry the LLM's proposal with weight 1 (cold start:
   LLM labels only), except the LLM labels that confident learning flags (below), which carry ``SUSPECT_WEIGHT`` (0:
   left out). Random checks (the calibration sample and audits, whose people's decisions the certificate rests on)
   are learned as their undecided twins are, with the LLM's label: their people's labels train the error model only
   (below), so a decided check is ranked as the auto-accepted items it stands for are. Items with no label (LLM
   abstained) and rejected items are not trained on. Members: NB-LR (logistic
   regression on features scaled by naive-Bayes log-count ratios, the "NBSVM" of Wang & Manning 2012, strong on short
   sentiment-like texts) and complement naive Bayes, both on the TF-IDF n-grams; and, when an operator configured a
   sentence-embedding model, plain logistic regression on the embeddings (``features.Features`` carries both parts;
   ``OnPart`` gives each member its own). Embeddings join the n-grams rather than replace them: on mr_gpt35 they
   measured better beside TF-IDF and worse instead of it (bench/RESULTS.md).
2. **Out of fold.** Items the committee trained on are scored by the fold models that did *not* see them (K-fold
   cross-validation), so the model cannot simply repeat the label it was given. Items outside training are scored by
   the average of the fold models. An item's fold is a hash of its id (``fold_splits``), so it keeps its fold from
   round to round and its score moves only as new decisions move it.
   **Confident learning** (Northcutt et al. 2021, as in cleanlab) runs first, on the same folds: complement naive
   Bayes alone, on the n-grams, fitted per fold, gives each trained item out-of-fold class probabilities; an
   LLM-labelled item (never a person's) is flagged when its most probable class is not the LLM's label and some other
   class reaches that class's threshold (the mean probability of the class over the items labelled with it). The
   committee then learns less of the LLM's systematic errors; flagged items are still scored, out of fold, like the
   others.
3. **Signals** per item, all from those out-of-fold probabilities: ``p_llm_label`` (the probability the committee gives
   to the LLM's label: low = disagreement, as in confident learning / FreeAL), modAL's ``least_confident``,
   ``margin`` and ``entropy``, committee disagreement (modAL ``vote_entropy`` and ``KL_max_disagreement``), and the
   LLM's own ``llm_confidence`` when the LLM gave one.
4. **Combination** into ``ambiguity`` = the estimated probability that the LLM's label is wrong:
   - before enough reviews exist (fewer than ``MIN_ERROR_EXAMPLES`` reviewed items where the LLM was right, or wrong):
     ``1 - p_llm_label``, averaged with ``1 - llm_confidence`` when the LLM gave a confidence;
   - afterwards, a small logistic "error model" learns the weights: it is trained on the reviewed items (target: the
     person's label differs from the LLM's) over the signals above plus the LLM's label itself (LLMs err more on some
     labels than others). Reviewed items' signals are out-of-fold, so the error model learns from honest scores.
     The error model is cross-fitted: a reviewed item's score comes from the fold models that did not learn from
     it (in-sample, reviewed errors would be pushed up and the low strata that calibrate the certificate would look
     cleaner than they are). The ambiguity pools the error model with the cold-start rule by averaging their
     log-odds (a geometric mean of odds). Why: people review the items ranked most ambiguous, so the error model learns from a biased sample and
     extrapolates poorly to the rest of the pool (on mr_gpt35 its ranking of the LLM's remaining errors fell to AUC
     0.54 at the first round it took over, where the rule alone kept 0.72); the pooled score keeps the rule's
     ordering as an anchor while taking the error model's corrections (such as the LLM's per-label error rate).
   Items without an LLM label always get ambiguity 1 and go to review.

Multi-label projects use the label set as one class (label powerset): the LLM is "right" only if it proposed exactly
the final set.
"""
from dataclasses import dataclass, field

import numpy as np
from modAL.disagreement import KL_max_disagreement
from modAL.models import ActiveLearner, Committee
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty
from scipy import sparse
from scipy.stats import entropy as _entropy
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB

from annotation.selection.features import Features

HUMAN_WEIGHT = 3.0
MIN_ERROR_EXAMPLES = 5
MAX_FOLDS = 5
# Large projects use fewer folds: each fold trains on most of the data anyway, and fits dominate a round's time.
LARGE_PROJECT = 30_000
LARGE_PROJECT_FOLDS = 3
PROBA_FLOOR = 1e-4
# Training weight of an LLM label that the confident-learning pass flags as likely wrong (0: not trained on).
SUSPECT_WEIGHT = 0.0
SUSPECT_NB_ALPHA = 0.3
# Folds from the items' ids once every class has this many rows per fold (``fold_splits``).
KEYED_FOLD_MIN = 10


@dataclass
class Scores:
    """Per-item outputs in input order; ``labels`` are the class names behind the columns of ``proba``."""

    labels: list[str]
    proba: np.ndarray  # (n, k) out-of-fold committee probabilities
    p_llm_label: np.ndarray  # (n,) nan where the LLM gave no label
    least_confident: np.ndarray
    margin: np.ndarray
    entropy: np.ndarray
    vote_entropy: np.ndarray
    kl_max: np.ndarray
    out_of_fold: np.ndarray  # (n,) bool: scored by models that did not train on the item
    ambiguity: np.ndarray  # (n,) estimated probability that the LLM's label is wrong
    error_model: bool  # whether a learned error model combined the signals (else the cold-start rule)
    cv_human_agreement: float | None  # out-of-fold agreement of the model with people's labels
    folds: int
    suspect: np.ndarray  # (n,) bool: LLM labels flagged by confident learning and trained on with SUSPECT_WEIGHT

    model_labels: list[str] = field(init=False)

    def __post_init__(self):
        self.model_labels = [self.labels[i] for i in self.proba.argmax(axis=1)]


class NBLogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression on features scaled by naive-Bayes log-count ratios (NBSVM, Wang & Manning 2012).

    Each feature is multiplied by log(P(feature | class) / P(feature | other classes)), estimated from the (weighted)
    training rows with add-``alpha`` smoothing, so the regression starts from naive Bayes' evidence and corrects it.
    Two classes: one ratio and one regression. More: one-vs-rest, the class probabilities normalised to sum to 1.
    Features must be non-negative (TF-IDF).
    """

    def __init__(self, C: float = 4.0, alpha: float = 1.0, max_iter: int = 300, random_state: int | None = None):
        self.C = C
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        y = np.asarray(y)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        self.classes_ = np.unique(y)
        positives = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        self.ratios_, self.models_ = [], []
        for c in positives:
            on = y == c
            ratio = (self._log_share(X, on, w) - self._log_share(X, ~on, w)).astype(X.dtype)
            model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
            model.fit(_scaled(X, ratio), on.astype(int), sample_weight=w)
            self.ratios_.append(ratio)
            self.models_.append(model)
        return self

    def _log_share(self, X, rows, w) -> np.ndarray:
        counts = self.alpha + np.asarray(X[rows].T @ w[rows], dtype=float).ravel()
        return np.log(counts / counts.sum())

    def predict_proba(self, X) -> np.ndarray:
        positive = np.column_stack([model.predict_proba(_scaled(X, ratio))[:, 1]
                                    for ratio, model in zip(self.ratios_, self.models_)])
        if len(self.classes_) == 2:
            return np.column_stack([1.0 - positive[:, 0], positive[:, 0]])
        return positive / np.maximum(positive.sum(axis=1, keepdims=True), PROBA_FLOOR)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _scaled(X, ratio: np.ndarray):
    """Each column of X (sparse or dense) times its log-count ratio."""
    if sparse.issparse(X):
        return sparse.csr_matrix(X.multiply(ratio))
    return np.asarray(X) * ratio


class OnPart(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted on one part of ``Features`` (``"ngrams"`` or ``"embeddings"``), so one committee can
    hold members that read different features."""

    def __init__(self, estimator, part: str):
        self.estimator = estimator
        self.part = part

    def fit(self, X: Features, y, sample_weight=None):
        self.estimator_ = clone(self.estimator).fit(getattr(X, self.part), y, sample_weight=sample_weight)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: Features) -> np.ndarray:
        return self.estimator_.predict_proba(getattr(X, self.part))

    def predict(self, X: Features) -> np.ndarray:
        return self.estimator_.predict(getattr(X, self.part))


def committee_members(seed: int, *, embeddings: bool = False) -> list:
    members = [
        OnPart(NBLogisticRegression(C=4.0, max_iter=300, random_state=seed), "ngrams"),
        OnPart(ComplementNB(alpha=0.3), "ngrams"),
    ]
    if embeddings:
        members.append(OnPart(LogisticRegression(C=4.0, max_iter=1000, random_state=seed), "embeddings"))
    return members


def _committee(models) -> Committee:
    # An ActiveLearner built without training data does not fit (so it avoids modAL's broken check_X_y call on
    # scikit-learn >= 1.8); the Committee reads the fitted estimators' classes_. See tests/annotation/selection/test_modal_compat.py.
    return Committee(learner_list=[ActiveLearner(estimator=m) for m in models])


def _fit_members(X: Features, y, w, seed: int) -> list:
    models = committee_members(seed, embeddings=X.embeddings is not None)
    for model in models:
        model.fit(X, y, sample_weight=w)
    return models


def vote_entropy(committee: Committee, X) -> np.ndarray:
    """modAL's ``vote_entropy`` (the entropy of the committee members' votes), with the votes counted in arrays:
    modAL counts each row's votes with a ``Counter`` in Python, a quarter of a chunk's scoring time at 50k rows.
    tests/annotation/selection/test_modal_compat.py checks that the two agree."""
    votes = committee.vote(X)  # (n, members), modAL's own
    counts = np.stack([(votes == label).sum(axis=1) for label in committee.classes_], axis=1)
    return _entropy(counts / len(committee), axis=1)


def _full_proba(committee: Committee, X, k: int) -> np.ndarray:
    """Committee probabilities over all k classes (a fold may lack a rare class)."""
    out = np.zeros((X.shape[0], k))
    out[:, committee.classes_.astype(int)] = committee.predict_proba(X)
    return out


def score(
    X: Features | sparse.spmatrix,
    *,
    llm: list[str | None],
    human: list[str | None],
    trainable_llm: np.ndarray | None = None,
    llm_confidence: np.ndarray | None = None,
    checks: np.ndarray | None = None,
    keys: np.ndarray | None = None,
    seed: int = 0,
) -> Scores | None:
    """Score every row of X. ``llm[i]``: the LLM's label (None if it abstained); ``human[i]``: a person's label or None.

    ``trainable_llm`` masks rows whose LLM label may be trained on (False for rejected items); ``checks`` masks the
    random checks, whose person's label the committee does not learn (module docstring). Returns None when there
    are fewer than two classes or too few labelled rows to cross-validate. A bare matrix is taken as TF-IDF n-grams.
    """
    fitted = fit(X, llm=llm, human=human, trainable_llm=trainable_llm, llm_confidence=llm_confidence, checks=checks,
                 keys=keys, seed=seed)
    return None if fitted is None else fitted[0]


def fit(
    X: Features | sparse.spmatrix,
    *,
    llm: list[str | None],
    human: list[str | None],
    trainable_llm: np.ndarray | None = None,
    llm_confidence: np.ndarray | None = None,
    checks: np.ndarray | None = None,
    keys: np.ndarray | None = None,
    seed: int = 0,
) -> "tuple[Scores, Model] | None":
    """``score``, and the ``Model`` that scores rows outside X the way ``score`` scores X's unlabelled rows (the
    average of the fold committees and of the fold error models): a chunked round trains on a sample and hands the
    model to the workers that score the rest."""
    X = X if isinstance(X, Features) else Features(X)
    n = X.shape[0]
    trainable_llm = np.ones(n, bool) if trainable_llm is None else trainable_llm
    llm_confidence = np.full(n, np.nan) if llm_confidence is None else np.asarray(llm_confidence, float)
    checks = np.zeros(n, bool) if checks is None else np.asarray(checks, bool)
    # The committee learns a random check as it would learn the check's undecided twin: its LLM label, weight 1. A
    # person's label there would reach the check's own score through its neighbours (the twins it corrects are
    # reviewed, and their people's labels then rank the check), so decided checks would drift from the items they
    # stand for. The error model still learns what the person said.
    learned = [None if check else h for h, check in zip(human, checks)]
    target = [h if h is not None else (lab if ok else None) for h, lab, ok in zip(learned, llm, trainable_llm)]
    names = sorted({t for t in target if t is not None} | {lab for lab in llm if lab is not None}
                   | {h for h in human if h is not None})
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[t] if t is not None else -1 for t in target])
    train = np.flatnonzero(y >= 0)
    counts = np.bincount(y[train], minlength=len(names)) if len(train) else np.zeros(len(names), int)
    present = counts[counts > 0]
    if len(present) < 2 or len(train) < 10:
        return None
    max_folds = LARGE_PROJECT_FOLDS if n > LARGE_PROJECT else MAX_FOLDS
    folds = int(min(max_folds, max(2, present.min())))
    human_mask = np.array([h is not None for h in learned], dtype=bool)
    w = np.where(human_mask, HUMAN_WEIGHT, 1.0)
    k = len(names)

    # Confident learning: a cheap out-of-fold pass flags LLM labels the text contradicts; the committee then trains
    # without them, so it imitates the LLM's systematic errors less (their scores stay out of fold either way).
    # Classes with fewer members than folds cannot be stratified; they are spread across folds as far as they go.
    strat = np.where(counts[y[train]] >= folds, y[train], -1)
    splits = fold_splits(y[train], strat, folds, seed, keys=None if keys is None else np.asarray(keys)[train])
    suspect = suspect_llm_labels(X.ngrams, y, w, train, human_mask, splits, k)
    w = np.where(suspect, SUSPECT_WEIGHT, w)

    proba = np.zeros((n, k))
    vote_ent = np.zeros(n)
    kl = np.zeros(n)
    rest = np.flatnonzero(y < 0)
    rest_proba = np.zeros((len(rest), k))
    fold_members = []
    for fit_idx, held_idx in splits:
        fit_rows, held_rows = train[fit_idx], train[held_idx]
        members = _fit_members(X[fit_rows], y[fit_rows], w[fit_rows], seed)
        fold_members.append(members)
        committee = _committee(members)
        proba[held_rows] = _full_proba(committee, X[held_rows], k)
        vote_ent[held_rows] = vote_entropy(committee, X[held_rows])
        kl[held_rows] = KL_max_disagreement(committee, X[held_rows])
        if len(rest):
            rest_proba += _full_proba(committee, X[rest], k) / folds
            vote_ent[rest] += vote_entropy(committee, X[rest]) / folds
            kl[rest] += KL_max_disagreement(committee, X[rest]) / folds
    proba[rest] = rest_proba
    proba = np.clip(proba, 0.0, 1.0)

    # modAL's measures read predict_proba from "a classifier"; the out-of-fold matrix is that classifier's output.
    fixed = _FixedProba(proba)
    rows = np.arange(n).reshape(-1, 1)
    least = classifier_uncertainty(fixed, rows)
    margin = classifier_margin(fixed, rows)
    ent = classifier_entropy(fixed, rows)

    llm_idx = np.array([index[lab] if lab is not None else -1 for lab in llm])
    has_llm = llm_idx >= 0
    p_llm = np.full(n, np.nan)
    p_llm[has_llm] = proba[np.flatnonzero(has_llm), llm_idx[has_llm]]
    out_of_fold = y >= 0

    signals = _signal_matrix(p_llm, least, margin, ent, vote_ent, kl, llm_confidence, llm_idx, k)
    reviewed = has_llm & np.array([h is not None for h in human])
    wrong = np.array([h is not None and h != lab for h, lab in zip(human, llm)])
    ambiguity, error_models = _combine(signals, p_llm, llm_confidence, reviewed, wrong, seed, keys)
    ambiguity[~has_llm] = 1.0

    humans = np.flatnonzero(np.array([h is not None for h in human]) & out_of_fold)
    said = np.array([index[human[i]] for i in humans], dtype=int)
    agreement = float((proba[humans].argmax(axis=1) == said).mean()) if len(humans) else None
    scores = Scores(
        labels=names, proba=proba, p_llm_label=p_llm, least_confident=least, margin=margin, entropy=ent,
        vote_entropy=vote_ent, kl_max=kl, out_of_fold=out_of_fold, ambiguity=ambiguity,
        error_model=error_models is not None, cv_human_agreement=agreement, folds=folds, suspect=suspect,
    )
    return scores, Model(labels=names, fold_members=fold_members, error_models=error_models)


@dataclass
class Model:
    """What a round learned, for rows it did not train on: the fold committees' members and the fold error models.

    ``score`` gives a row what ``fit`` gives the rows it did not train on (its unlabelled ones): the committees'
    probabilities and disagreement averaged over the folds, the error model's averaged over its folds and pooled with
    the cold-start rule. It is what a chunked round pickles into the database for the workers that score the chunks.
    """

    labels: list[str]
    fold_members: list[list]
    error_models: list | None

    def score(self, X: Features | sparse.spmatrix, *, llm: list[str | None],
              llm_confidence: np.ndarray | None = None) -> Scores:
        """Scores of rows outside training. An LLM label the model never saw (a class absent from the training set)
        is treated as no label: ambiguity 1, the item goes to people."""
        X = X if isinstance(X, Features) else Features(X)
        n, k, folds = X.shape[0], len(self.labels), len(self.fold_members)
        llm_confidence = np.full(n, np.nan) if llm_confidence is None else np.asarray(llm_confidence, float)
        proba, vote_ent, kl = np.zeros((n, k)), np.zeros(n), np.zeros(n)
        for members in self.fold_members:
            committee = _committee(members)
            proba += _full_proba(committee, X, k) / folds
            vote_ent += vote_entropy(committee, X) / folds
            kl += KL_max_disagreement(committee, X) / folds
        proba = np.clip(proba, 0.0, 1.0)
        fixed = _FixedProba(proba)
        rows = np.arange(n).reshape(-1, 1)
        least = classifier_uncertainty(fixed, rows)
        margin = classifier_margin(fixed, rows)
        ent = classifier_entropy(fixed, rows)
        index = {name: i for i, name in enumerate(self.labels)}
        llm_idx = np.array([index.get(lab, -1) if lab is not None else -1 for lab in llm], dtype=int)
        has_llm = llm_idx >= 0
        p_llm = np.full(n, np.nan)
        p_llm[has_llm] = proba[np.flatnonzero(has_llm), llm_idx[has_llm]]
        ambiguity = _prior(p_llm, llm_confidence)
        if self.error_models:
            signals = _signal_matrix(p_llm, least, margin, ent, vote_ent, kl, llm_confidence, llm_idx, k)
            learned = sum(model.predict_proba(signals)[:, 1] for model in self.error_models) / len(self.error_models)
            ambiguity = 1.0 / (1.0 + np.exp(-(_logit(ambiguity) + _logit(learned)) / 2))
        ambiguity[~has_llm] = 1.0
        return Scores(
            labels=self.labels, proba=proba, p_llm_label=p_llm, least_confident=least, margin=margin, entropy=ent,
            vote_entropy=vote_ent, kl_max=kl, out_of_fold=np.zeros(n, bool), ambiguity=ambiguity,
            error_model=bool(self.error_models), cv_human_agreement=None, folds=folds, suspect=np.zeros(n, bool),
        )


def fold_splits(y: np.ndarray, strat: np.ndarray, folds: int, seed: int, *, keys: np.ndarray | None = None) -> list:
    """(fit, held) positions of each fold. With ``keys`` (the items' ids) and every class at least
    ``KEYED_FOLD_MIN`` times ``folds`` strong, a row's fold is a hash of its key and ``seed``: the same round after
    round, so an item's out-of-fold score moves only as far as new decisions move it. Stratified folds redrawn each
    round moved it by the luck of which neighbours shared its fold: thousands of items swung between auto-accepted and
    review over a run with no new evidence about them (bench/RESULTS.md). Smaller classes: stratified folds, which
    put every class in every fold's training set."""
    counts = np.bincount(np.asarray(y, dtype=int))  # class indices, never negative
    if keys is not None and len(keys) and counts[counts > 0].min() >= KEYED_FOLD_MIN * folds:
        fold = _mix(np.asarray(keys, dtype=np.uint64), seed) % np.uint64(folds)
        return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(folds)]
    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), strat))


def _mix(keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of each key, salted with ``seed``: well-spread bits from consecutive ids."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64(0x9E3779B97F4A7C15) * np.uint64((seed % (1 << 32)) + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def suspect_llm_labels(X, y, w, train, human_mask, splits, k) -> np.ndarray:
    """Rows whose LLM label confident learning (Northcutt et al. 2021, as in cleanlab) takes for wrong.

    Complement naive Bayes, fitted per fold (``splits`` over ``train``), gives every trained row out-of-fold class
    probabilities. Each class's threshold is the mean probability of that class over the rows labelled with it. An
    LLM-labelled row (never a person's) is flagged when its most probable class is not its label and some other class
    reaches its threshold. A class never loses all its rows this way (it would vanish from training): its flags are
    then dropped.
    """
    n = X.shape[0]
    suspect = np.zeros(n, bool)
    proba = np.zeros((n, k))
    for fit_idx, held_idx in splits:
        fit_rows, held_rows = train[fit_idx], train[held_idx]
        model = ComplementNB(alpha=SUSPECT_NB_ALPHA).fit(X[fit_rows], y[fit_rows], sample_weight=w[fit_rows])
        proba[np.ix_(held_rows, model.classes_.astype(int))] = model.predict_proba(X[held_rows])
    labels = y[train]
    thresholds = np.array([proba[train[labels == c], c].mean() if (labels == c).any() else np.inf for c in range(k)])
    candidates = train[~human_mask[train]]
    given = y[candidates]
    above = proba[candidates] >= thresholds
    above[np.arange(len(candidates)), given] = False
    flagged = candidates[above.any(axis=1) & (proba[candidates].argmax(axis=1) != given)]
    suspect[flagged] = True
    for c in np.unique(labels):
        members = train[labels == c]
        if suspect[members].all():
            suspect[members] = False
    return suspect


class _FixedProba:
    """A stand-in classifier whose predict_proba returns precomputed rows (X holds row indices)."""

    def __init__(self, proba: np.ndarray):
        self.proba = proba

    def predict_proba(self, rows) -> np.ndarray:
        return self.proba[np.asarray(rows).ravel()]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PROBA_FLOOR, 1 - PROBA_FLOOR)
    return np.log(p / (1 - p))


def _signal_matrix(p_llm, least, margin, ent, vote_ent, kl, llm_conf, llm_idx, k) -> np.ndarray:
    has_conf = ~np.isnan(llm_conf)
    columns = [
        _logit(np.nan_to_num(p_llm, nan=0.5)),
        least,
        margin,
        ent / np.log(max(k, 2)),
        vote_ent,
        kl,
        np.where(has_conf, _logit(np.nan_to_num(llm_conf, nan=0.5)), 0.0),
        has_conf.astype(float),
    ]
    # The LLM's label as one-hot: an LLM's error rate differs by label (GPT-3.5 on movie reviews says "negative" too
    # often). Large label sets would dilute the few reviewed errors over too many columns.
    if k <= 20:
        onehot = np.zeros((len(llm_idx), k))
        ok = llm_idx >= 0
        onehot[np.flatnonzero(ok), llm_idx[ok]] = 1.0
        columns.append(onehot)
    return np.column_stack(columns)


def _combine(signals, p_llm, llm_conf, reviewed, wrong, seed, keys=None) -> tuple[np.ndarray, list | None]:
    """Ambiguity = P(LLM label wrong): learned from reviewed items once there are enough of both outcomes; with the
    fold error models (None before there are enough)."""
    n_wrong = int((reviewed & wrong).sum())
    n_right = int((reviewed & ~wrong).sum())
    if n_wrong >= MIN_ERROR_EXAMPLES and n_right >= MIN_ERROR_EXAMPLES:
        learned, models = _cross_fitted_error_model(signals, reviewed, wrong, seed,
                                                    folds=min(MAX_FOLDS, n_wrong, n_right), keys=keys)
        pooled = (_logit(_prior(p_llm, llm_conf)) + _logit(learned)) / 2
        return 1.0 / (1.0 + np.exp(-pooled)), models
    return _prior(p_llm, llm_conf), None


def _cross_fitted_error_model(signals, reviewed, wrong, seed, *, folds: int,
                              keys=None) -> tuple[np.ndarray, list]:
    """P(LLM wrong) from the error model, cross-fitted: a reviewed item is scored by the models fitted without it.

    Scored in-sample, the model would push the reviewed items it got wrong up and the ones it got right down, so a
    low-ambiguity stratum would look cleaner than it is among the reviewed items that calibrate it (an optimistic
    certificate). Items nobody reviewed get the average of the fold models.
    """
    rows = np.flatnonzero(reviewed)
    target = wrong[rows].astype(int)
    learned = np.zeros(len(signals))
    rest = np.flatnonzero(~reviewed)
    folds = max(2, folds)
    splits = fold_splits(target, target, folds, seed, keys=None if keys is None else np.asarray(keys)[rows])
    models = []
    for fit_idx, held_idx in splits:
        model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
        model.fit(signals[rows[fit_idx]], target[fit_idx])
        models.append(model)
        learned[rows[held_idx]] = model.predict_proba(signals[rows[held_idx]])[:, 1]
        if len(rest):
            learned[rest] += model.predict_proba(signals[rest])[:, 1] / folds
    return learned, models


def _prior(p_llm, llm_conf) -> np.ndarray:
    """The cold-start rule: 1 - p_llm_label, averaged with 1 - llm_confidence where the LLM gave one."""
    prior = 1.0 - np.nan_to_num(p_llm, nan=0.0)
    has_conf = ~np.isnan(llm_conf)
    prior[has_conf] = (prior[has_conf] + 1.0 - llm_conf[has_conf]) / 2
    return prior
