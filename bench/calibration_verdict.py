"""How close does a calibration sample come to the "unreliable" line? Each seed alone, up to its calibration verdict.

    python bench/calibration_verdict.py PATH [--seeds 24] [--first-seed 32] [--weak-labels N] [--target 0.98]

Each seed runs in a fresh process and database, as ``annotation_efficiency.py --certified --first-seed S`` would run
it alone (project id S + 1, the same creation time, item ids from 1): the app's own import, scoring rounds and review
queue, a simulated reviewer answering with gold, until the round that gives the calibration verdict. That round's
calibration checks (the ones the router judged, with that round's ambiguity) are ranked as the router ranks them, and
the least one-sided lower bound of the error rate over every prefix of at least ``MIN_REGION_CHECKS`` checks is printed
at 95% and at 99.5% (``UNRELIABLE_CONFIDENCE``): the cohort is declared unreliable when that least bound is above
1 - target. One line per seed, then a JSON line.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def one(path: Path, seed: int, weak_labels: int, target: float) -> dict:
    sys.path.insert(0, str(BENCH))
    from common import setup_django

    with tempfile.TemporaryDirectory(prefix="ss-verdict-") as folder:
        setup_django(folder=folder, migrate=True)
        import annotation_efficiency as ae

        from annotation.models import Project
        from annotation.selection import calibration, rounds, selection_run_round

        judged = {}
        checks = rounds._checks

        def seen(**kwargs):  # the round's own checks, as ``_plan`` reads them
            every, sampled = checks(**kwargs)
            judged.update(sampled)
            return every, sampled

        rounds._checks = seen
        rows = ae.read_rows(path, weak_labels, 0, seed=0)
        step = max(1, round(0.02 * len(rows)))
        project, reviewer = ae.seeded_project(rows, seed=seed, target=target, step=step)
        row_of = ae.row_index(project)
        state = {}
        for _ in range(100):
            selection_run_round(project=project, trigger="reviews")
            state = Project.objects.get(pk=project.pk).routing_state
            if state.get("phase") != "calibrating":
                break
            if ae.review_queue(project, reviewer, rows, row_of, at_most=step) == 0:
                break
        cohorts = state.get("cohorts") or {}
        return {"seed": seed, "phase": state.get("phase"), "cohorts": {cohort: {
            "verdict": (cohorts.get(cohort) or {}).get("calibration_verdict"), "checks": len(sample),
            "wrong": int(sample.wrong.sum()),
            "least_lower": {f"{level}": _rounded(calibration.least_region_lower(sample, level))
                            for level in (0.95, calibration.UNRELIABLE_CONFIDENCE)}}
            for cohort, sample in judged.items()}}


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--first-seed", type=int, default=32)
    parser.add_argument("--weak-labels", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.path, args.one, args.weak_labels, args.target)))
        return
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        done = subprocess.run([sys.executable, __file__, str(args.path), "--one", str(seed), "--weak-labels",
                               str(args.weak_labels), "--target", str(args.target)],
                              capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"seed {seed}: phase {result['phase']}, " + "; ".join(
            f"{c}: {v['wrong']} of {v['checks']} wrong, least lower bound {v['least_lower']}"
            for c, v in result["cohorts"].items()), flush=True)
    allowance = round(1 - args.target, 6)
    worst = {level: max((v["least_lower"][level] or 0.0) for r in results for v in r["cohorts"].values())
             for level in ("0.95", "0.995")}
    print(json.dumps({"dataset": args.path.name, "seeds": args.seeds, "first_seed": args.first_seed,
                      "allowance": allowance, "highest_least_lower": worst,
                      "declared": sum(r["phase"] == "unreliable" for r in results)}))


if __name__ == "__main__":
    main()
