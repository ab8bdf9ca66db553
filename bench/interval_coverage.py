"""How often would each 95% interval have held the auto-accepted items' true accuracy, round after round?

    python bench/interval_coverage.py LOG [LOG ...]

Reads the per-round lines of ``bench/annotation_efficiency.py --certified`` runs: the checks in the auto-accepted
region (``region`` in the routing state: all of them, and how many are calibration items) and the auto-accepted items'
true accuracy (gold known). Each round's checks are counted as the Routing page counts a region's, as one sample
(``estimates.region_proportion`` without zones: the audits alone once ``AUDITS_ALONE`` of them are in the region, 10
checks or more to count), under three intervals on the same checks: Wilson's (shown until session 9), Jeffreys'
equal-tailed one, and Clopper-Pearson's (shown now, per zone).
A miss is "pessimistic" when the items were better than the interval's upper end. The last line printed is one JSON
object. Rounds of one seed re-use its checks, so the rounds are not independent: the seeds are the sample.
"""
import argparse
import ast
import json
import math
import re
from pathlib import Path

from common import setup_django
from scipy.stats import beta

Z95 = 1.959963984540054
LINE = re.compile(r"certified seed (\d+): .*region (\{.*\}), true \S+, auto true ([\d.]+)")


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson's score interval, which the pages showed until session 9 (kept here for the comparison)."""
    p = k / n
    denom = 1 + Z95 * Z95 / n
    centre = (p + Z95 * Z95 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / denom
    return centre - half, centre + half


def jeffreys(k: int, n: int) -> tuple[float, float]:
    low = beta.ppf(0.025, k + 0.5, n - k + 0.5) if k > 0 else 0.0
    high = beta.ppf(0.975, k + 0.5, n - k + 0.5) if k < n else 1.0
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path)
    args = parser.parse_args()
    setup_django()
    from annotation.selection.estimates import exact_interval, region_proportion

    rules = {"wilson": wilson, "jeffreys": jeffreys, "clopper_pearson": exact_interval}
    per_seed: dict[str, dict] = {}
    for path in args.logs:
        for match in LINE.finditer(path.read_text(encoding="utf-8")):
            # The checks as one sample, counted as the page counts a region (zones left aside).
            region = {key: value for key, value in ast.literal_eval(match.group(2)).items() if key != "zones"}
            checks = region_proportion(region)
            right, n = checks.successes, checks.n
            if n < 10:
                continue
            truth = float(match.group(3))
            seed = per_seed.setdefault(match.group(1), {"rounds": 0} | {name: {"held": 0, "pessimistic": 0}
                                                                        for name in rules})
            seed["rounds"] += 1
            for name, interval in rules.items():
                low, high = (float(end) for end in interval(right, n))
                seed[name]["held"] += low <= truth <= high
                seed[name]["pessimistic"] += truth > high
    rounds = sum(s["rounds"] for s in per_seed.values())
    result = {"seeds": len(per_seed), "rounds": rounds, "per_seed": per_seed}
    for name in rules:
        held = sum(s[name]["held"] for s in per_seed.values())
        result[name] = {"held": held, "share": round(held / rounds, 4) if rounds else None,
                        "pessimistic_misses": sum(s[name]["pessimistic"] for s in per_seed.values())}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
