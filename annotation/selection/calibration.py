"""Calibration and the certificate: how likely each LLM label is wrong, and how good the curated dataset is.

Pure numpy/scipy, no database; ``rounds`` feeds it and stores what it decides.

Calibration sample. Before anything is auto-accepted, people review a random sample of the LLM-labelled items,
stratified by ambiguity (``CALIBRATION_STRATA`` equal-count strata, each giving its share, so the sample is a simple
random sample in effect and its accept rate estimates the LLM's accuracy without bias). Its size is
``z² T / (1 − T)`` for a target T (z = 1.96): the smallest sample whose 95% Wilson lower bound can reach T if every label
in it is right. 0.98 -> 189, 0.95 -> 73, 0.90 -> 35; clipped to [``MIN_CALIBRATION``, ``MAX_CALIBRATION``] and to
the items there are.

Error model. The items still to decide are cut into ``ERROR_STRATA`` equal-count strata by ambiguity. Each stratum
counts the reviewed items whose ambiguity falls in it and how many of them the LLM got wrong (a person changed the
label or rejected the item). Adjacent strata are pooled until the error rates rise with ambiguity (pool adjacent
violators, weighted by reviews): a stratum with few reviews borrows strength from its neighbours, and the ranking the
router learned is kept. An item's calibrated p(error) is its pooled stratum's posterior mean under the Jeffreys prior,
Beta(k + 1/2, n − k + 1/2). Reviewed items count whatever sent them to review: within a stratum the chance of error is
taken to depend on ambiguity only (the router picked them by ambiguity), and calibration and audit items, drawn at
random, keep every stratum covered.

Bound. The curated dataset's accuracy is (kept human decisions + auto-accepted items − their errors) / its size. The
number of errors among auto-accepted items is uncertain through the stratum error rates: ``BOUND_DRAWS`` draws from
each pooled stratum's posterior give draws of that number, and its 95th percentile gives the one-sided 95% lower bound
of the dataset's accuracy (a Bayesian bound whose Jeffreys prior gives intervals with close to nominal frequentist
coverage; bench/annotation_efficiency.py measures how often the declared stop really held).

Target fill. Candidates are auto-accepted from the least ambiguous up, as far as the planned dataset's lower bound
stays at or above the target; everything else waits for people. The LLM is declared unreliable when even the least
ambiguous pooled stratum's error rate is, at 95% confidence, above 1 − T: no subset the router can name meets the target.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

Z95 = 1.959963984540054
MIN_CALIBRATION = 30
MAX_CALIBRATION = 400
CALIBRATION_STRATA = 5
ERROR_STRATA = 10
BOUND_DRAWS = 4000
CONFIDENCE = 0.95


def calibration_size(*, target: float, available: int) -> int:
    """How many LLM-labelled items people review before anything is auto-accepted (module docstring)."""
    target = min(max(target, 0.5), 0.999)
    wanted = math.ceil(Z95 * Z95 * target / (1 - target))
    return max(0, min(available, max(MIN_CALIBRATION, min(wanted, MAX_CALIBRATION))))


def calibration_draw(*, ids: np.ndarray, ambiguity: np.ndarray, size: int, seed: int,
                     strata: int = CALIBRATION_STRATA) -> np.ndarray:
    """``size`` ids drawn at random within equal-count ambiguity strata, each stratum giving its share."""
    ids = np.asarray(ids)
    if size <= 0 or len(ids) == 0:
        return ids[:0]
    if size >= len(ids):
        return ids.copy()
    rng = np.random.default_rng(seed)
    order = np.argsort(np.nan_to_num(np.asarray(ambiguity, dtype=float), nan=1.0), kind="stable")
    groups = np.array_split(order, min(strata, len(ids)))
    shares = np.array([len(g) for g in groups], dtype=float) * size / len(ids)
    takes = np.floor(shares).astype(int)
    # Largest remainders get the leftover draws, so the sizes add up to ``size`` exactly.
    for g in np.argsort(-(shares - takes), kind="stable")[: size - takes.sum()]:
        takes[g] += 1
    chosen = [rng.choice(group, size=take, replace=False) for group, take in zip(groups, takes) if take]
    return ids[np.sort(np.concatenate(chosen))]


@dataclass(frozen=True)
class ErrorModel:
    """Pooled strata over ambiguity: ``upper[g]`` is the highest ambiguity of group g (the last one is +inf)."""

    upper: np.ndarray
    reviewed: np.ndarray  # n per group
    errors: np.ndarray  # k per group

    def group_of(self, ambiguity: np.ndarray) -> np.ndarray:
        a = np.nan_to_num(np.asarray(ambiguity, dtype=float), nan=1.0)
        return np.minimum(np.searchsorted(self.upper, a, side="left"), len(self.upper) - 1)

    @property
    def rates(self) -> np.ndarray:
        """Posterior mean error rate per group (Jeffreys prior)."""
        return (self.errors + 0.5) / (self.reviewed + 1.0)

    def p_error(self, ambiguity: np.ndarray) -> np.ndarray:
        return self.rates[self.group_of(ambiguity)]

    def error_floor(self, group: int) -> float:
        """The one-sided 95% lower bound of one group's error rate."""
        n, k = self.reviewed[group], self.errors[group]
        return 0.0 if k == 0 else float(beta.ppf(1 - CONFIDENCE, k + 0.5, n - k + 0.5))

    def draws(self, m: int, seed: int) -> np.ndarray:
        """(m, groups) draws of the groups' error rates from their posteriors."""
        rng = np.random.default_rng(seed)
        return rng.beta(self.errors + 0.5, self.reviewed - self.errors + 0.5, size=(m, len(self.upper)))


def error_model_fit(*, reviewed_ambiguity: np.ndarray, reviewed_wrong: np.ndarray, pool_ambiguity: np.ndarray,
                    strata: int = ERROR_STRATA) -> ErrorModel:
    """Strata cut on the pool still to decide, filled with the reviewed items, pooled until monotone."""
    pool = np.sort(np.nan_to_num(np.asarray(pool_ambiguity, dtype=float), nan=1.0))
    if len(pool):
        cuts = [pool[-1] if len(g) == 0 else g[-1] for g in np.array_split(pool, min(strata, len(pool)))]
        upper = np.unique(np.asarray(cuts[:-1], dtype=float))
    else:
        upper = np.empty(0)
    upper = np.append(upper, np.inf)
    a = np.nan_to_num(np.asarray(reviewed_ambiguity, dtype=float), nan=1.0)
    wrong = np.asarray(reviewed_wrong, dtype=bool)
    group = np.minimum(np.searchsorted(upper, a, side="left"), len(upper) - 1)
    n = np.bincount(group, minlength=len(upper)).astype(float)
    k = np.bincount(group, weights=wrong.astype(float), minlength=len(upper))
    return _pool_adjacent(upper, n, k)


def _pool_adjacent(upper: np.ndarray, n: np.ndarray, k: np.ndarray) -> ErrorModel:
    """Merge neighbouring strata until the posterior mean error rate never falls as ambiguity rises."""
    blocks = [[u, ni, ki] for u, ni, ki in zip(upper, n, k)]
    merged: list[list[float]] = []
    for block in blocks:
        merged.append(block)
        while len(merged) > 1 and _rate(merged[-2]) > _rate(merged[-1]):
            last = merged.pop()
            merged[-1] = [last[0], merged[-1][1] + last[1], merged[-1][2] + last[2]]
    return ErrorModel(upper=np.array([b[0] for b in merged]), reviewed=np.array([b[1] for b in merged]),
                      errors=np.array([b[2] for b in merged]))


def _rate(block) -> float:
    return (block[2] + 0.5) / (block[1] + 1.0)


@dataclass(frozen=True)
class Plan:
    auto: int  # how many of the candidates (least ambiguous first) may be auto-accepted
    lower_bound: float | None  # the planned dataset's 95% lower bound with that many auto-accepted
    estimate: float | None  # its point estimate
    max_p_error: float | None  # the highest calibrated p(error) among the auto-accepted (what the target allows)


def dataset_bound(*, model: ErrorModel, auto_ambiguity: np.ndarray, human_kept: float, other_kept: float = 0.0,
                  draws: np.ndarray | None = None, seed: int = 0) -> tuple[float | None, float | None]:
    """(point estimate, one-sided 95% lower bound) of the accuracy of a dataset made of ``human_kept`` items people
    decided, ``other_kept`` items people will decide, and the auto-accepted items with these ambiguities."""
    counts = np.bincount(model.group_of(auto_ambiguity), minlength=len(model.upper)).astype(float)
    return _bound(model, counts, human_kept + other_kept, draws if draws is not None else model.draws(BOUND_DRAWS, seed))


def _bound(model: ErrorModel, counts: np.ndarray, sure: float, draws: np.ndarray) -> tuple[float | None, float | None]:
    size = sure + counts.sum()
    if size <= 0:
        return None, None
    errors = draws @ counts
    estimate = 1 - float(counts @ model.rates) / size
    return estimate, 1 - float(np.quantile(errors, CONFIDENCE)) / size


def target_fill(*, model: ErrorModel, candidates: np.ndarray, human_kept: float, keep_share: float, target: float,
                seed: int = 0) -> Plan:
    """The most candidates (``candidates``: their ambiguities) that may be auto-accepted, least ambiguous first, with
    the planned dataset's lower bound at or above ``target``. The candidates not auto-accepted go to people, and
    ``keep_share`` of those are expected to be kept (the share of people's decisions that were not rejections)."""
    a = np.sort(np.nan_to_num(np.asarray(candidates, dtype=float), nan=1.0))
    draws = model.draws(BOUND_DRAWS, seed)
    groups = model.group_of(a)
    total = len(a)

    def bound(c: int) -> tuple[float | None, float | None]:
        counts = np.bincount(groups[:c], minlength=len(model.upper)).astype(float)
        return _bound(model, counts, human_kept + keep_share * (total - c), draws)

    # The bound falls as more candidates are auto-accepted (each adds expected errors); the largest count that
    # keeps it is found by bisection.
    low, high = 0, total
    while low < high:
        mid = (low + high + 1) // 2
        lb = bound(mid)[1]
        if lb is not None and lb >= target:
            low = mid
        else:
            high = mid - 1
    estimate, lower = bound(low)
    max_p = float(model.rates[groups[low - 1]]) if low else None
    return Plan(auto=low, lower_bound=lower, estimate=estimate, max_p_error=max_p)


def llm_unreliable(*, model: ErrorModel, target: float) -> bool:
    """True when even the least ambiguous pooled stratum errs, at 95% confidence, more often than the target allows."""
    if not len(model.reviewed) or model.reviewed[0] == 0:
        return False
    return model.error_floor(0) > 1 - target
