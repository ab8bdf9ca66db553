"""Does "target reached with 95% confidence" hold 95% of the time when the router picks the region from its checks?

    python bench/region_choice.py [--trials 2000]

The fill (``calibration.target_fill``) does not test one region fixed in advance: it auto-accepts the largest prefix of
the ambiguity ranking whose dataset bound is at or above the target, so the region's edge tends to fall where its
checks happen to be short of errors. This simulates one round of that, many times, on error profiles where the rate
of the x least ambiguous items grows as r(x) = a + b x / 1000 (``PROFILES``: mr_gpt35's, fitted from 150 rounds of
its certified runs in bench/RESULTS.md, session 11, and made-up ones at other sizes, slopes and targets). Per trial:
each item errs at the profile's marginal rate in rank order, people check a random calibration sample (sized as the
app sizes it for the target) and 5% audits, the router's own ``target_fill`` picks the region, and the trial holds if
the dataset (everything outside the region and every check decided by people, the rest auto-accepted) really meets
the target. Beside it, on the same draws, the same fill with the Jeffreys bound the router used until session 13
(95th percentile of Beta(k + 1/2, n - k + 1/2)), computed here. One round, a fixed ranking, checks that err at their
items' rate: what the fill's choice costs, not the rounds' repeated looks (annotation_efficiency.py --certified
measures whole runs). One line per profile, then a JSON line. Fixed seeds: repeatable.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import beta

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import setup_django  # noqa: E402

# name: (items, a, b per 1,000 items, target)
PROFILES = {
    "mr_gpt35 fit": (8662, 0.0007, 0.00595, 0.98),
    "steeper, 5,574 items": (5574, 0.001, 0.012, 0.98),
    "flat 1%": (5000, 0.01, 0.0005, 0.98),
    "target 95%": (4000, 0.005, 0.02, 0.95),
    "target 90%": (3000, 0.01, 0.05, 0.90),
}
AUDIT_RATE = 0.05


def jeffreys_reach(*, ranked_wrong: np.ndarray, checked: np.ndarray, target: float) -> int:
    """How many of the ranked items the fill would take with the Jeffreys bound (checks go to people either way)."""
    seen, found = np.cumsum(checked), np.cumsum(checked & ranked_wrong)
    upper = np.where(seen > 0, beta.ppf(0.95, found + 0.5, seen - found + 0.5), 1.0)
    ok = np.flatnonzero(np.cumsum(~checked) * upper <= (1 - target) * len(checked))
    return int(ok[-1]) + 1 if len(ok) else 0


def simulate(*, items: int, a: float, b: float, target: float, trials: int, seed: int = 0) -> dict:
    from annotation.selection import calibration

    x = np.arange(items + 1, dtype=float)
    marginal = np.clip(np.diff(x * np.maximum(1e-4, a + b * x / 1000)), 0.0, 1.0)
    ambiguity = np.arange(items) / items  # the ranking: item i is the i-th least ambiguous
    size = calibration.calibration_size(target=target, available=items)
    rng = np.random.default_rng(seed)
    out = {"exact": [], "jeffreys": []}
    for _ in range(trials):
        wrong = rng.random(items) < marginal
        checked = rng.random(items) < AUDIT_RATE
        checked[rng.choice(items, size=size, replace=False)] = True
        checks = calibration.Checks.of(ambiguity=ambiguity[checked], wrong=wrong[checked])
        plan = calibration.target_fill(checks=checks, candidates=ambiguity, human_kept=0, keep_share=1.0,
                                       target=target, to_people=checked)
        for name, reach in (("exact", plan.auto), ("jeffreys", jeffreys_reach(ranked_wrong=wrong, checked=checked,
                                                                               target=target))):
            auto = ~checked[:reach]
            missed = int((wrong[:reach] & auto).sum())
            out[name].append((1 - missed / items >= target, (items - int(auto.sum())) / items))
    return {name: {"held": round(float(np.mean([r[0] for r in runs])), 4),
                   "median_reviewed": round(float(np.median([r[1] for r in runs])), 4)} for name, runs in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    setup_django()
    results = {}
    for name, (items, a, b, target) in PROFILES.items():
        result = simulate(items=items, a=a, b=b, target=target, trials=args.trials)
        results[name] = result
        print(f"{name} ({items} items, r(x) = {a} + {b} x/1000, target {target:.0%}): target met at the chosen region "
              f"in {result['exact']['held']:.1%} (exact bound, reviewed {result['exact']['median_reviewed']:.1%}) "
              f"against {result['jeffreys']['held']:.1%} "
              f"(Jeffreys, reviewed {result['jeffreys']['median_reviewed']:.1%})",
              flush=True)
    print(json.dumps({"trials": args.trials, "audit_rate": AUDIT_RATE, "profiles": results}))


if __name__ == "__main__":
    main()
