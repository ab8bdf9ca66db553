"""Calibration and the certificate: how likely each LLM label is wrong, and how good the curated dataset is.

Pure numpy/scipy, no database; ``rounds`` feeds it and stores what it decides.

Calibration sample. Before anything is auto-accepted, people review a random sample of the LLM-labelled items,
stratified by ambiguity (``CALIBRATION_STRATA`` equal-count strata, each giving its share, so the sample is a simple
random sample in effect and its accept rate estimates the LLM's accuracy without bias). Its size is
``z² T / (1 − T)`` for a target T (z = 1.96): the smallest sample whose 95% Wilson lower bound can reach T if every label
in it is right. 0.98 -> 189, 0.95 -> 73, 0.90 -> 35; clipped to [``MIN_CALIBRATION``, ``MAX_CALIBRATION``] and to
the items there are.

Checks. The certificate rests only on people's decisions about items drawn at random: the calibration sample and
the audits (a stable pseudo-random ``audit_rate`` share of every item the router would auto-accept, so over rounds a
uniform sample of the auto-accepted region). Items people reviewed because the router found them ambiguous are not a
random sample of anything the router auto-accepts, and they were picked by an earlier model whose ranking carries
information about errors the current one lacks; on mr_gpt35 they made the least ambiguous stratum look several times
worse than it was, and the LLM was declared unreliable half-way through a run that was meeting its target.

Region bound. Auto-accepted items are always a region "ambiguity <= reach" (least ambiguous first). Its error rate is
bounded from the checks that fall in it, k wrong of n, by the one-sided 95% Clopper-Pearson ("exact") upper bound, the
quantile of Beta(k + 1, n - k): for a region fixed in advance it holds at least 95% of the time at every rate and size.
The fill does not fix the region in advance: it takes the largest one whose bound holds, so the region's edge falls
where its checks happen to be short of errors. The exact bound's own margin pays for that choice: simulated on the error
profile of mr_gpt35 and three made-up ones whose fill stops at its edge (``bench/region_choice.py``), the dataset met
the target at the chosen region in 95.0-96.1% of projects; with the Jeffreys bound used until session 13 (the 95th
percentile of Beta(k + 1/2, n - k + 1/2)), in 93.5-94.2%, so the "95% confidence" a lead read was about 94%. It costs
about 1.4 points more reviewed on mr_gpt35's profile in one round, about four in whole runs (bench/RESULTS.md, session
13). One bound for the whole region (one per stratum would add half an error per stratum: with ten strata of ~19 checks
every stratum started above a 2% allowance). The curated dataset's accuracy is (kept human decisions + auto-accepted
items - their errors) / its size; its one-sided 95% lower bound counts the region's errors at the upper bound of its
rate, its estimate at the Jeffreys posterior mean (k + 1/2) / (n + 1). bench/annotation_efficiency.py --certified
measures how often the declared stop really held.

Target fill. Candidates are auto-accepted from the least ambiguous up, as far as the planned dataset's lower bound
stays at or above the target (every count is tried; the largest that holds is taken); everything else waits for
people. The highest ambiguity auto-accepted is the most the target allows: nothing above it is auto-accepted in any
routing mode.

Unreliable. A cohort is declared unreliable when no region the router can name meets the target: for every set of
the least ambiguous checks (at least ``MIN_REGION_CHECKS`` of them), the one-sided Clopper-Pearson lower bound of its
error rate is above 1 - T at 99.5% (``UNRELIABLE_CONFIDENCE``). The verdict withdraws the cohort's auto-accepts and
stops them, so it asks for stronger evidence than a bound does: the calibration sample is judged once, when it is
complete, and every check, audits included, at each round after. At 95% (and the Jeffreys bound) the calibration
verdict declared a usable GPT-3.5 (90% right; the other runs reach the 98% certificate with it) unreliable for good on
one mr_gpt35 run: the ranking of the round its sample completed put 4 errors among the 30 least ambiguous of its 189
calibration items (least prefix bound 0.0285, against 0.0133 at most on 24 other seeds; bench/RESULTS.md, session 12).
A 30%-accurate labeller's least ambiguous 30 carry 11-14 errors, far above the line at either level. One region below
the line is enough to keep an LLM.

Per-item p(error), shown to people: the checks cut into ``ERROR_STRATA`` equal-count strata of the pool by
ambiguity, pooled until monotone (pool adjacent violators: isotonic regression over strata), each stratum's Jeffreys
posterior mean. It explains an item; it is not what the certificate uses.
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
MIN_REGION_CHECKS = 30
CONFIDENCE = 0.95
# Declaring a cohort unreliable withdraws its auto-accepts and stops them: it asks for stronger evidence than a bound
# (module docstring, "Unreliable").
UNRELIABLE_CONFIDENCE = 0.995


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
class Checks:
    """People's decisions on randomly drawn items of one cohort: their ambiguity now, and whether the LLM's label was
    wrong (a person changed it or rejected the item). Kept sorted by ambiguity."""

    ambiguity: np.ndarray
    wrong: np.ndarray

    @classmethod
    def of(cls, *, ambiguity, wrong) -> "Checks":
        a = np.nan_to_num(np.asarray(ambiguity, dtype=float), nan=1.0)
        order = np.argsort(a, kind="stable")
        return cls(ambiguity=a[order], wrong=np.asarray(wrong, dtype=bool)[order])

    def __len__(self) -> int:
        return len(self.ambiguity)

    def within(self, reach) -> tuple[np.ndarray, np.ndarray]:
        """(n, k): how many checks have ambiguity <= each reach, and how many of those the LLM got wrong."""
        n = np.searchsorted(self.ambiguity, np.asarray(reach, dtype=float), side="right")
        return n, self._cumulative_wrong[n]

    @property
    def _cumulative_wrong(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.wrong)]).astype(int)

    def region_rates(self, reach) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(n, k, posterior mean, 95% upper bound) of the error rate of the region "ambiguity <= reach", for each
        reach; the bound is computed once per distinct n (it depends on nothing else)."""
        n, k = self.within(reach)
        table_n = np.arange(len(self) + 1)
        upper = rate_upper(table_n, self._cumulative_wrong)
        return n, k, (k + 0.5) / (n + 1.0), upper[n]


def rate_upper(n, k, confidence: float = CONFIDENCE) -> np.ndarray:
    """One-sided upper bound (95% unless told) of an error rate with k errors in n checks (Clopper-Pearson); 1 with no
    checks or every check wrong."""
    n, k = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    right = n - k
    upper = beta.ppf(confidence, k + 1, np.maximum(right, 1))
    return np.where((n > 0) & (right > 0), upper, 1.0)


def rate_lower(n, k, confidence: float = CONFIDENCE) -> np.ndarray:
    """One-sided lower bound (95% unless told) of an error rate with k errors in n checks (Clopper-Pearson); 0 with no
    errors."""
    n, k = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    lower = beta.ppf(1 - confidence, np.maximum(k, 1), n - k + 1)
    return np.where(k > 0, lower, 0.0)


@dataclass(frozen=True)
class Plan:
    auto: int  # how many of the candidates (least ambiguous first) may be auto-accepted
    lower_bound: float | None  # the planned dataset's 95% lower bound with that many auto-accepted
    estimate: float | None  # its point estimate
    reach: float | None  # the highest ambiguity auto-accepted: what the target allows
    region_checks: int  # checks inside the auto-accepted region (all cohorts)
    region_errors: int


def _by_cohort(checks, cohorts, size: int) -> tuple[dict, np.ndarray]:
    """A single ``Checks`` (one cohort) or a mapping cohort -> Checks, and each item's cohort."""
    if isinstance(checks, Checks):
        return {None: checks}, np.full(size, None, dtype=object)
    return checks, np.asarray(cohorts, dtype=object)


def dataset_bound(*, checks, auto_ambiguity: np.ndarray, human_kept: float, other_kept: float = 0.0,
                  cohorts=None) -> tuple[float | None, float | None]:
    """(point estimate, one-sided 95% lower bound) of the accuracy of a dataset made of ``human_kept`` items people
    decided, ``other_kept`` items people will decide, and the auto-accepted items with these ambiguities (and, with
    several cohorts, these cohorts: each cohort's region is bounded by its own checks, the bounds added up)."""
    auto = np.nan_to_num(np.asarray(auto_ambiguity, dtype=float), nan=1.0)
    size = human_kept + other_kept + len(auto)
    if size <= 0:
        return None, None
    checks, cohorts = _by_cohort(checks, cohorts, len(auto))
    mean_errors = upper_errors = 0.0
    for cohort in set(cohorts.tolist()):
        mine = auto[cohorts == cohort]
        own = checks.get(cohort) or Checks.of(ambiguity=[], wrong=[])
        _, _, mean, upper = own.region_rates(mine.max())
        mean_errors += len(mine) * float(mean)
        upper_errors += len(mine) * float(upper)
    return 1 - mean_errors / size, 1 - upper_errors / size


def target_fill(*, checks, candidates: np.ndarray, human_kept: float, keep_share: float, target: float,
                cohorts=None, to_people=None) -> Plan:
    """The most candidates (``candidates``: their ambiguities) that may be auto-accepted, least ambiguous first, with
    the planned dataset's lower bound at or above ``target``. The candidates not auto-accepted go to people, and
    ``keep_share`` of those are expected to be kept (the share of people's decisions that were not rejections).
    ``to_people`` (one flag per candidate): candidates that go to people even inside the region (audit draws, and in
    budget or threshold mode the items chosen for review); they are counted as people will decide them, not as
    auto-accepted. Counting them as auto-accepted left every round's region short of what the target allows by the
    audit rate, and the next round made up part of it: routing moved items with no new review.
    With several cohorts (``checks`` a mapping, ``cohorts`` each candidate's), one reach applies to all, and each
    cohort's share of the region is bounded by its own checks."""
    a = np.nan_to_num(np.asarray(candidates, dtype=float), nan=1.0)
    checks, cohorts = _by_cohort(checks, cohorts, len(a))
    order = np.argsort(a, kind="stable")
    a, cohorts = a[order], cohorts[order]
    total = len(a)
    people = np.zeros(total, bool) if to_people is None else np.asarray(to_people, dtype=bool)[order]
    c = np.arange(1, total + 1, dtype=float)
    checked = np.cumsum(people)  # candidates within each prefix that people decide all the same
    mean_errors, upper_errors = np.zeros(total), np.zeros(total)
    n_all, k_all = np.zeros(total, int), np.zeros(total, int)
    for cohort in set(cohorts.tolist()):
        own = checks.get(cohort) or Checks.of(ambiguity=[], wrong=[])
        count = np.cumsum((cohorts == cohort) & ~people)  # this cohort's auto-accepted candidates within each prefix
        n, k, mean, upper = own.region_rates(a)
        mean_errors += count * mean
        upper_errors += count * upper
        n_all += n
        k_all += k
    size = human_kept + keep_share * (total - c + checked) + c - checked
    estimate, lower = 1 - mean_errors / size, 1 - upper_errors / size
    ok = np.flatnonzero(lower >= target)
    if not len(ok):
        size0 = human_kept + keep_share * total
        sure = 1.0 if size0 > 0 else None
        return Plan(auto=0, lower_bound=sure, estimate=sure, reach=None, region_checks=0, region_errors=0)
    last = int(ok[-1])
    return Plan(auto=last + 1, lower_bound=float(lower[last]), estimate=float(estimate[last]), reach=float(a[last]),
                region_checks=int(n_all[last]), region_errors=int(k_all[last]))


def region_zones(*, checks: Checks, calibration: Checks, auto: np.ndarray, waiting: np.ndarray) -> list[dict]:
    """The auto-accepted items (their ambiguities ``auto``) cut for the estimate people see, at the least ambiguous
    random check drawn among them that still waits for a person (``waiting``): below it every drawn check is decided,
    so its checks are a random sample of its items; from it up, the items that joined the range since its checks were
    drawn, whose own checks are still waiting. Per zone: its items, the checks in its range and their errors, of them
    the calibration sample's. One zone when nothing waits (``estimates.region_checks`` reads them)."""
    auto = np.sort(np.nan_to_num(np.asarray(auto, dtype=float), nan=1.0))
    if not len(auto):
        return []
    waiting = np.asarray(waiting, dtype=float)
    waiting = waiting[waiting <= auto[-1]]
    # Zones are [low, high): the top one ends above the last item so it keeps it.
    cuts = [-np.inf, float(waiting.min()), np.inf] if len(waiting) else [-np.inf, np.inf]
    zones = []
    for low, high in zip(cuts, cuts[1:]):
        high = min(high, np.nextafter(auto[-1], np.inf))
        n, wrong = _between(checks, low, high)
        n_cal, wrong_cal = _between(calibration, low, high)
        zones.append({"items": _count(auto, low, high), "checks": n, "wrong": wrong, "calibration_checks": n_cal,
                      "calibration_wrong": wrong_cal})
    return [zone for zone in zones if zone["items"]]


def _count(ordered: np.ndarray, low: float, high: float) -> int:
    return int(np.searchsorted(ordered, high, side="left") - np.searchsorted(ordered, low, side="left"))


def _between(checks: Checks, low: float, high: float) -> tuple[int, int]:
    """(n, k) of the checks with low <= ambiguity < high."""
    start, end = (int(np.searchsorted(checks.ambiguity, x, side="left")) for x in (low, high))
    wrong = checks._cumulative_wrong
    return end - start, int(wrong[end] - wrong[start])


def llm_unreliable(*, checks: Checks, target: float) -> bool:
    """True when no region of the least ambiguous checks (``MIN_REGION_CHECKS`` or more) errs as rarely as the target
    allows, at 99.5% confidence (module docstring). Fewer checks than that: not decided (False)."""
    least = least_region_lower(checks, UNRELIABLE_CONFIDENCE)
    return least is not None and least > 1 - target


def least_region_lower(checks: Checks, confidence: float) -> float | None:
    """The least one-sided lower bound of the error rate over every region of the least ambiguous checks
    (``MIN_REGION_CHECKS`` or more): the cleanest region the router could name. None with fewer checks."""
    if len(checks) < MIN_REGION_CHECKS:
        return None
    n = np.arange(MIN_REGION_CHECKS, len(checks) + 1)
    k = np.cumsum(checks.wrong)[n - 1]
    return float(rate_lower(n, k, confidence).min())
