"""Why do the random checks in the auto-accepted range look worse than the items auto-accepted? One certified seed,
stopped part-way, read beside the gold labels.

    python bench/check_drift.py ../shared/data/mr_gpt35.csv [--seed 9] [--until 0.45] [--weak-labels N]

Runs seed S of ``annotation_efficiency.py --certified`` (the same project id and creation time, so the same draws)
until ``--until`` of the items are reviewed, runs one more round, then reports: the audits whose ambiguity is in the
range the round auto-accepts and how many were wrong (as ``Project.routing_state["region"]`` counts them), the
auto-accepted items and their true error rate, the items ever auto-accepted and theirs (the population the audits
were drawn from), where those items' errors are now, and how many times items moved between auto-accepted and review.
The last line printed is one JSON object.
"""
import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from annotation_efficiency import read_rows, review_queue, row_index, seeded_project
from common import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--until", type=float, default=0.45, help="share of items reviewed before looking")
    parser.add_argument("--batch", type=float, default=0.02)
    parser.add_argument("--weak-labels", type=int, default=0, help="as annotation_efficiency.py --weak-labels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ss-bench-") as var_dir:
        setup_django(folder=var_dir, migrate=True)
        from annotation.models import Item, Project, Review, Status
        from annotation.selection import selection_run_round

        rows = read_rows(args.path, args.weak_labels, 0, seed=0)
        n = len(rows)
        step = max(1, round(args.batch * n))
        project, reviewer = seeded_project(rows, seed=args.seed, target=0.98, step=step)
        row_of = row_index(project)
        reviews = rounds = 0
        while reviews < args.until * n:
            selection_run_round(project=project, trigger="reviews")
            rounds += 1
            done = review_queue(project, reviewer, rows, row_of, at_most=step)
            if not done:
                break
            reviews += done
        selection_run_round(project=project, trigger="reviews")
        rounds += 1
        region = Project.objects.get(pk=project.pk).routing_state.get("region") or {}

        def wrong(pk, proposed) -> bool:
            return proposed != [rows[row_of[pk]]["gold"]]

        items = Item.objects.filter(project=project)
        status = {pk: (s, wrong(pk, p), audit) for pk, s, p, audit in
                  items.values_list("pk", "status", "proposed_labels", "is_audit")}
        moves = Counter(Review.objects.filter(project=project, action__in=("route", "auto_accept"))
                        .values_list("before__status", "after__status"))
        ever = set(Review.objects.filter(project=project, after__status=Status.AUTO_ACCEPTED)
                   .values_list("item_id", flat=True))
        auto = [w for s, w, _ in status.values() if s == Status.AUTO_ACCEPTED]
        audits = [w for s, w, a in status.values() if a and s in (Status.ACCEPTED, Status.REJECTED)]
        errors_now = Counter(status[pk][0] for pk in ever if status[pk][1])
        in_range = int(region.get("checks", 0)) - int(region.get("calibration_checks", 0))
        wrong_in_range = int(region.get("wrong", 0)) - int(region.get("calibration_wrong", 0))
        print(json.dumps({
            "dataset": args.path.name, "seed": args.seed, "reviewed": round(reviews / n, 4), "rounds": rounds,
            "audits_in_range": {"n": in_range, "wrong": wrong_in_range},
            "auto_accepted": {"n": len(auto), "wrong": sum(auto)},
            "audits_decided": {"n": len(audits), "wrong": sum(audits)},
            "ever_auto_accepted": {"n": len(ever), "wrong": sum(status[pk][1] for pk in ever),
                                   "errors_now": dict(errors_now)},
            "moves": {f"{before}->{after}": count for (before, after), count in moves.most_common()},
        }))


if __name__ == "__main__":
    main()
