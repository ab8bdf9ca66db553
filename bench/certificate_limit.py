"""How soon could any 95% certificate stop, given how the LLM's errors spread over the ambiguity ranking?

    python bench/certificate_limit.py LOG [LOG ...] [--target 0.98] [--calibration 189]
    python bench/certificate_limit.py --fit A B ITEMS HINDSIGHT [...]   # from a fit already made, no logs

Reads the per-round lines of ``bench/annotation_efficiency.py --certified`` runs (each round logs how many items were
auto-accepted and their true accuracy, gold known) and fits the error rate of the auto-accepted region against its size,
r(A), by least squares on the rounds after calibration (or takes r(A) = a + b A / 1000 from ``--fit a b ITEMS
HINDSIGHT``, with the set's size and its median hindsight share). Then, for several audit rates a, it finds the largest
region A whose one-sided 95% bound, the router's own (``calibration.rate_upper``: Clopper-Pearson since session 13,
Jeffreys before), holds the target when the bound is fed the *expected* errors among its checks: k = r(A) n, with n = a
A audits plus the calibration sample's share A / N of ``--calibration`` items:

    A (1 - a) upper95(k, n) <= (1 - target) N

People review everything outside the region plus the audits inside it, so the reviews at that stop are
N - A + a A. This is a model, not a run: an estimator that knew the region's true error rate up to the binomial
uncertainty of its checks could not stop sooner. Compared with the reviews the same runs needed to first reach the
target with gold known ("hindsight"), it says how far above hindsight a valid 95% certificate must stop on this data.

Stratified checks (``--strata``). Would cutting the region into S equal-count strata by ambiguity, each bounded by its
own checks, or drawing audits more often where the errors sit, stop sooner? The fit gives the errors among the x least
ambiguous items as E(x) = x r(x), so stratum s of the region holds E(hi) - E(lo) errors. Each stratum's rate gets its
Jeffreys posterior from its expected checks, the region's errors are the strata's posteriors summed (their 95th
percentile from ``DRAWS`` draws, fixed seed), at the same total audit budget a A spread evenly ("even") or in
proportion to each stratum's sqrt(m (1 - m)) (Neyman allocation: "ambiguity-weighted", the importance sampling a
router could do).

How often the region the fill *chooses* holds, rather than one fixed in advance, is bench/region_choice.py's question
(this script's ``--trials`` until session 13). The last line printed is one JSON object.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import setup_django  # noqa: E402

# The region record holds nested zones: match up to the line's last fields.
LINE = re.compile(r"auto-accepted (\d+), region [^\n]*?, true ([\d.]+), auto true ([\d.]+)$", re.MULTILINE)
HINDSIGHT = re.compile(r"stopped \w+ after (\d+) reviews, true accuracy \S+, hindsight (\d+)")
ROWS = re.compile(r": (\d+) rows, LLM accuracy")


def read(paths: list[Path]) -> tuple[int, list[tuple[int, float]], list[float]]:
    n, points, hindsight = 0, [], []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        rows = ROWS.search(text)
        n = int(rows.group(1)) if rows else n
        for match in LINE.finditer(text):
            points.append((int(match.group(1)), 1 - float(match.group(3))))
        hindsight += [int(m.group(2)) / n for m in HINDSIGHT.finditer(text)]
    return n, points, hindsight


def best_stop(*, n: int, rate, audit_rate: float, calibration: int, target: float) -> tuple[int, float]:
    """(region size, reviews as a share of n) of the soonest stop the model allows."""
    from annotation.selection.calibration import rate_upper

    allowance = (1 - target) * n
    best = (0, 1.0)
    for size in range(50, n, 25):
        checks = audit_rate * size + calibration * size / n
        errors = rate(size) * checks
        upper = float(rate_upper(checks, errors))
        if size * (1 - audit_rate) * upper <= allowance:
            reviews = (n - size + audit_rate * size) / n
            if reviews < best[1]:
                best = (size, reviews)
    return best


DRAWS = 20_000


def errors_below(rate, x: np.ndarray) -> np.ndarray:
    """The fit's expected errors among the x least ambiguous items, E(x) = x r(x), for each x."""
    return x * np.array([rate(v) for v in x])


def stratified_stop(*, n: int, rate, audit_rate: float, calibration: int, target: float, strata: int,
                    weighted: bool) -> tuple[int, float]:
    """``best_stop`` with the region cut into ``strata`` equal-count strata (module docstring)."""
    allowance = (1 - target) * n
    rng = np.random.default_rng(0)
    best = (0, 1.0)
    for size in range(500, n, 25):
        edges = np.linspace(0, size, strata + 1)
        widths = np.diff(edges)
        marginal = np.clip(np.diff(errors_below(rate, edges)) / widths, 1e-4, 1 - 1e-4)
        weight = np.sqrt(marginal * (1 - marginal)) if weighted else np.ones(strata)
        rates = np.minimum(1.0, audit_rate * size * weight / (weight * widths).sum())
        checks = rates * widths + calibration * widths / n
        errors = marginal * checks
        draws = rng.beta(errors + 0.5, checks - errors + 0.5, size=(DRAWS, strata))
        upper = float(np.quantile(draws @ (widths * (1 - rates)), 0.95))
        if upper <= allowance:
            reviews = (n - size + float((rates * widths).sum())) / n
            if reviews < best[1]:
                best = (size, reviews)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", type=Path, nargs="*")
    parser.add_argument("--fit", type=float, nargs=4, metavar=("A", "B", "ITEMS", "HINDSIGHT"),
                        help="r(A) = A + B A/1000 on ITEMS items whose median hindsight share is HINDSIGHT")
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--calibration", type=int, default=189, help="the calibration sample's size")
    parser.add_argument("--strata", type=int, nargs="*", default=[], help="also bound the region in these many strata")
    args = parser.parse_args()
    setup_django()
    if args.fit:
        intercept, slope, n, share = args.fit
        n, slope, points, hindsight = int(n), slope / 1000, [], [share]
    elif args.logs:
        n, points, hindsight = read(args.logs)
        sizes = np.array([p[0] for p in points], dtype=float)
        errors = np.array([p[1] for p in points])
        slope, intercept = np.polyfit(sizes, errors, 1)
    else:
        parser.error("give the logs of certified runs, or --fit")

    def rate(size: float) -> float:
        return max(1e-4, intercept + slope * size)

    print(f"{len(points)} rounds, n = {n}: r(A) = {intercept:.4f} + {slope * 1000:.5f} A/1000 "
          f"(r at 3,000 / 4,000 / 5,000: {rate(3000):.4f} / {rate(4000):.4f} / {rate(5000):.4f})")
    median_hindsight = float(np.median(hindsight)) if hindsight else None
    stops = {}
    for audit_rate in (0.02, 0.05, 0.1, 0.15, 0.2):
        size, reviews = best_stop(n=n, rate=rate, audit_rate=audit_rate, calibration=args.calibration,
                                  target=args.target)
        ratio = reviews / median_hindsight if median_hindsight else None
        stops[str(audit_rate)] = {"region": size, "reviews": round(reviews, 4),
                                  "over_hindsight": round(ratio, 3) if ratio else None}
        print(f"audit rate {audit_rate:.0%}: region {size}, reviews {reviews:.1%}"
              + (f" = {ratio:.2f}x hindsight" if ratio else ""))
    stratified = {}
    for audit_rate in (0.05, 0.1, 0.15):
        for strata in args.strata:
            for weighted in (False, True):
                size, reviews = stratified_stop(n=n, rate=rate, audit_rate=audit_rate, calibration=args.calibration,
                                                target=args.target, strata=strata, weighted=weighted)
                ratio = reviews / median_hindsight if median_hindsight else None
                how = "ambiguity-weighted" if weighted else "even"
                stratified[f"{audit_rate} {strata} {how}"] = {
                    "region": size, "reviews": round(reviews, 4), "over_hindsight": round(ratio, 3) if ratio else None}
                print(f"audit budget {audit_rate:.0%}, {strata} strata, {how} audits: region {size}, reviews "
                      f"{reviews:.1%}" + (f" = {ratio:.2f}x hindsight" if ratio else ""))
    print(json.dumps({"n": n, "rounds": len(points), "rate_fit": [round(intercept, 5), round(slope, 9)],
                      "hindsight_median": median_hindsight, "stops": stops, "stratified": stratified}))


if __name__ == "__main__":
    main()
