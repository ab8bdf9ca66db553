"""How many human reviews until the curated labels reach 95 / 98 / 99% accuracy? Replays a labelled CSV through the app.

    python bench/annotation_efficiency.py PATH [--seeds 20] [--batch 0.02] [--weak-labels N] [--limit N]
        [--curve-seed S] [--certified [--target 0.98] [--certified-only] [--first-seed S [--replay-from F]]
        [--until-reviewed F]]

PATH is a CSV with ``text``, ``gold`` and ``llm_label`` (empty = the LLM abstained), optionally ``llm_confidence``; any
label set. A gold-only CSV (``text``, ``label``) works with ``--weak-labels N``: the "LLM" is then a weak classifier
(word TF-IDF + logistic regression) trained on N random rows, whose errors correlate with the text, and its top
probability is the LLM confidence.

The run drives the app's own code end to end on a throwaway SQLite database (or ``DATABASE_URL`` if set): the bulk
importer, scoring rounds (``selection_run_round``), the review queue's claim and review services with a simulated
reviewer who answers with gold. Each step the lead widens the review budget by ``--batch`` of the items, a round
routes the most ambiguous open items to the queue, the reviewer works through the queue, and the model retrains.
Curated labels are the reviewer's for reviewed items and the LLM's for the rest (an abstention counts as wrong until
reviewed). The curve uses seed 0 (``--curve-seed`` another) and no audits (audits are measured separately: with
audits each step also reviews ``audit_rate`` of the auto-accepted items).

Baselines are orderings of the same items: random, by LLM confidence (lowest first; null without a confidence
column), and the oracle that reviews exactly the LLM's errors (the limit). ``audit_coverage``: over ``--seeds`` fresh
projects (5% audits, a 10% review budget): the calibration sample reviewed, one round that routes, its audits
reviewed, the round those reviews call for, and the share of seeds whose shown 95% Clopper-Pearson interval (the
random checks in the range that round auto-accepts) holds the true accuracy of the items it left auto-accepted.

``--certified``: over ``--seeds`` fresh projects under the default policy (target mode, ``--target``, the default
audit rate), the reviewer works the queue a batch at a time with a round after each batch, until the round's phase
(``Project.routing_state``) is "reached" or "unreliable", or the queue is empty after a round. Per seed (the project id
seeds its calibration sample): reviews at the stop (calibration and audits included) and, when "reached" was declared,
the curated dataset's true accuracy (person-decided items with their final labels and auto-accepted items with the
LLM's, against gold). ``held``: the share of seeds whose declared stop held the target (a seed that never declared
"reached" counts as not held). ``hindsight_reviews``: the median over seeds of the reviews the same run needed to
first reach the target with gold known (seeds that stopped before reaching it left out). ``unreliable``: the median
reviews at which "unreliable" was declared (null when no seed declared it) and the largest share of items any seed ever
auto-accepted before it was declared (over the whole run when it was not). Coverage over rounds, not only the first:
``bound_coverage`` is the share of rounds (all seeds, from the first with a bound) whose declared lower bound was at
or below the curated dataset's true accuracy then; ``audit_coverage_over_rounds`` the share whose shown estimate of the
auto-accepted items (``estimates.accuracy_estimate``: the random checks in the range auto-accepted, 95%
Clopper-Pearson, 10 checks or more) held their true accuracy then. ``--certified-only`` skips the curve and the
one-round audit coverage.

The last line printed is one JSON object: dataset, n, llm_accuracy, reviews_to, baselines, audit_coverage (plus
weak_labels when used, and certified and unreliable with ``--certified``). Shares are of n.
"""
import argparse
import csv
import json
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import setup_django

THRESHOLDS = (0.95, 0.98, 0.99)


def read_rows(path: Path, weak_labels: int, limit: int, seed: int) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.setdefault("gold", row.get("label", ""))
    if limit and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    if weak_labels:
        weak_llm(rows, weak_labels, seed)
    return rows


def weak_llm(rows: list[dict], n: int, seed: int) -> None:
    """Label every row with a weak classifier trained on n random rows: realistic, text-correlated errors."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [r["text"] for r in rows]
    X = TfidfVectorizer(min_df=1).fit_transform(texts)
    slice_ = random.Random(seed + 1).sample(range(len(rows)), n)
    # Balanced class weights: otherwise a small slice of a skewed set (SMS spam) yields a labeller that only says "ham".
    model = LogisticRegression(max_iter=1000, class_weight="balanced").fit(X[slice_], [rows[i]["gold"] for i in slice_])
    proba = model.predict_proba(X)
    for row, p in zip(rows, proba):
        row["llm_label"] = str(model.classes_[p.argmax()])
        row["llm_confidence"] = f"{p.max():.4f}"


def first_crossings(order: list[int], rows: list[dict]) -> dict:
    """Share of items reviewed when curated accuracy first reaches each threshold, reviewing in ``order``."""
    n = len(rows)
    correct = sum(r["llm_label"] == r["gold"] for r in rows)
    out = {f"{t}": None for t in THRESHOLDS}
    for t in THRESHOLDS:
        if correct / n >= t:
            out[f"{t}"] = 0.0
    for k, i in enumerate(order, start=1):
        correct += rows[i]["llm_label"] != rows[i]["gold"]
        for t in THRESHOLDS:
            if out[f"{t}"] is None and correct / n >= t:
                out[f"{t}"] = round(k / n, 4)
    return out


def baselines(rows: list[dict], seed: int) -> dict:
    idx = list(range(len(rows)))
    shuffled = idx[:]
    random.Random(seed).shuffle(shuffled)
    has_conf = any(r.get("llm_confidence") for r in rows)
    by_conf = sorted(idx, key=lambda i: (bool(rows[i]["llm_label"]), float(rows[i].get("llm_confidence") or 0)))
    oracle = [i for i in idx if rows[i]["llm_label"] != rows[i]["gold"]]
    return {
        "random": first_crossings(shuffled, rows),
        "llm_confidence": first_crossings(by_conf, rows) if has_conf else None,
        "oracle": first_crossings(oracle, rows),
    }


def make_project(rows: list[dict], *, name: str, audit_rate: float | None, budget: float, batch_reviews: int,
                 target: float | None = None, created_at=None):
    from django.contrib.auth import get_user_model

    from annotation.io.importing import ImportFailed, ImportOptions, import_rows, import_validate, items_import
    from annotation.models import Label, Project
    from annotation.projects import services

    User = get_user_model()
    lead, _ = User.objects.get_or_create(username="bench-lead")
    reviewer, _ = User.objects.get_or_create(username="bench-reviewer")
    project = services.project_create(name=name, lead=lead)
    labels = sorted({r["gold"] for r in rows} | {r["llm_label"] for r in rows if r["llm_label"]})
    Label.objects.bulk_create(Label(project=project, name=label, order=i) for i, label in enumerate(labels))
    if target is None:
        # Budget mode with no target: the curve measures how well the router orders the reviews; the calibration
        # sample every project reviews first (30 items with no target) counts among the reviews.
        Project.objects.filter(pk=project.pk).update(audit_rate=audit_rate, review_budget=budget,
                                                     routing_mode="budget", retrain_every=batch_reviews,
                                                     target_accuracy=0.0)
    else:
        # The default policy with this target: only the retraining cadence is the bench's (and the audit rate, when
        # --audit-rate asks for another than the default).
        policy = {"audit_rate": audit_rate} if audit_rate is not None else {}
        Project.objects.filter(pk=project.pk).update(routing_mode="target", target_accuracy=target,
                                                     retrain_every=batch_reviews, **policy)
    if created_at is not None:
        # The audit draw is salted with the project's id and creation time: fixed, a seed routes the same way in
        # every run (and in any process, given the same id), so two versions of the code compare item for item.
        Project.objects.filter(pk=project.pk).update(created_at=created_at)
    project.refresh_from_db()
    services.membership_add(project=project, identifier=reviewer.username, role="annotator")
    has_conf = any(r.get("llm_confidence") for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            # Gold stays here, in ``rows``: only the simulated reviewer reads it, never the app.
            writer.writerow(["text", "llm_label", "llm_confidence", "row"])
            for i, r in enumerate(rows):
                writer.writerow([r["text"], r["llm_label"], r.get("llm_confidence", ""), i])
        options = ImportOptions(format="csv", llm_label_column="llm_label", duplicates="keep",
                                llm_confidence_column="llm_confidence" if has_conf else "")
        report = import_validate(project=project, path=path, options=options)
        if report.n_errors:
            raise ImportFailed(f"the CSV does not import: {report.errors[:3]}")
        items_import(project=project, rows=import_rows(project=project, path=path, options=options,
                                                       skip=report.skip))
    return project, reviewer


def review_queue(project, reviewer, rows: list[dict], row_of: dict, on_review=None, at_most: int | None = None) -> int:
    """The simulated reviewer: claim items from the app's queue and answer each with gold until it is empty (or
    ``at_most`` are answered)."""
    from annotation.queue.services import item_review, queue_claim

    done = 0
    while (at_most is None or done < at_most) and (item := queue_claim(project=project, user=reviewer)) is not None:
        gold = rows[row_of[item.pk]]["gold"]
        item_review(project=project, item_id=item.pk, user=reviewer, action="accept",
                    expected_version=item.version, labels=[gold])
        done += 1
        if on_review:
            on_review(row_of[item.pk])
    return done


def make_room(seed: int) -> None:
    """Empty placeholder projects until the newest project id is at least ``seed``: the next project gets id seed + 1
    (a project's id seeds its calibration draw, folds and models)."""
    from django.contrib.auth import get_user_model

    from annotation.models import Project

    lead, _ = get_user_model().objects.get_or_create(username="bench-lead")
    while (Project.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) < seed:
        Project.objects.create(name=f"bench placeholder {seed}", created_by=lead)


def row_index(project) -> dict:
    from annotation.models import Item

    return {pk: int(extra["row"]) for pk, extra in Item.objects.filter(project=project).values_list("pk", "extra")}


def learning_curve(rows: list[dict], batch: float, log, seed: int = 0) -> dict:
    """No audits: widen the budget by one batch, route, review the queue, retrain; until 99% or all reviewed.
    ``seed``: the curve's project gets id seed + 1 (placeholder projects first), and the project id seeds its
    calibration draw, its folds and its models; seed 0 is the curve every earlier table reports."""
    from annotation.models import Item, Project, Status
    from annotation.selection import selection_run_round

    n = len(rows)
    step = max(1, round(batch * n))
    make_room(seed)
    project, reviewer = make_project(rows, name="bench curve", audit_rate=0.0, budget=0.0, batch_reviews=step)
    row_of = row_index(project)
    correct = sum(r["llm_label"] == r["gold"] for r in rows)
    state = {"correct": correct, "reviewed": 0}
    out = {f"{t}": (0.0 if correct / n >= t else None) for t in THRESHOLDS}

    def on_review(i):
        state["reviewed"] += 1
        state["correct"] += rows[i]["llm_label"] != rows[i]["gold"]
        for t in THRESHOLDS:
            if out[f"{t}"] is None and state["correct"] / n >= t:
                out[f"{t}"] = round(state["reviewed"] / n, 4)

    rounds = 0
    while out[f"{THRESHOLDS[-1]}"] is None and state["reviewed"] < n:
        done = Item.objects.filter(project=project, status__in=(Status.ACCEPTED, Status.REJECTED)).count()
        Project.objects.filter(pk=project.pk).update(review_budget=min(1.0, (done + step) / n))
        started = time.monotonic()
        scoring_round = selection_run_round(project=project, trigger="reviews")
        rounds += 1
        reviewed = review_queue(project, reviewer, rows, row_of, on_review)
        log(f"round {rounds}: {time.monotonic() - started:.1f} s, reviewed {state['reviewed'] / n:.3f}, "
            f"curated accuracy {state['correct'] / n:.4f}, error model {scoring_round.metrics['error_model']}")
        if reviewed == 0:
            break
    return out


def audit_coverage(rows: list[dict], seeds: int, log) -> float:
    from annotation.models import Item, Project, Status
    from annotation.selection import accuracy_estimate, exact_interval, selection_run_round

    held = counted = 0
    for seed in range(seeds):
        project, reviewer = make_project(rows, name=f"bench audit {seed}", audit_rate=0.05, budget=0.1,
                                         batch_reviews=10**6)
        row_of = row_index(project)
        # The first round draws the calibration sample; once it is reviewed the second one routes by the budget.
        selection_run_round(project=project, trigger="bench")
        review_queue(project, reviewer, rows, row_of)
        selection_run_round(project=project, trigger="bench")
        from annotation.queue.services import item_review

        for item in Item.objects.filter(project=project, is_audit=True, status=Status.NEEDS_REVIEW):
            item_review(project=project, item_id=item.pk, user=reviewer, action="accept",
                        expected_version=item.version, labels=[rows[row_of[item.pk]]["gold"]])
        # The estimate counts the checks in the range the latest round auto-accepts: the round the audits' reviews
        # call for counts them. Read from the project as saved, as the pages read it.
        selection_run_round(project=project, trigger="bench")
        auto = Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).values_list("pk", "proposed_labels")
        truth = [labels == [rows[row_of[pk]]["gold"]] for pk, labels in auto]
        estimate = accuracy_estimate(project=Project.objects.get(pk=project.pk))
        if not truth or not estimate.audits.n:
            log(f"audit seed {seed}: nothing auto-accepted or no check in its range; not counted")
            continue
        counted += 1
        true_acc = sum(truth) / len(truth)
        low, high = estimate.auto_accepted_interval
        held += low <= true_acc <= high
        # The same checks as one sample (what the page showed before waiting audits split the range), for comparison.
        one = exact_interval(estimate.audits.successes, estimate.audits.n)
        log(f"audit seed {seed}: {estimate.audits.n} {estimate.audits.kind} in {len(estimate.audits.zones) or 1} "
            f"zone(s), estimate {estimate.auto_accepted_accuracy:.4f} [{low:.4f}, {high:.4f}], as one sample "
            f"[{one[0]:.4f}, {one[1]:.4f}], true {true_acc:.4f}")
    return round(held / counted, 4) if counted else None


def seeded_project(rows: list[dict], *, seed: int, target: float, step: int, audit_rate: float | None = None):
    """Seed ``seed``'s certified project: with --certified-only, the project with id seed + 1 created at a fixed time
    (the calibration and audit draws are seeded by both), whichever process runs it: --first-seed runs seeds side by
    side, and bench/check_drift.py replays one. The audit draw and the folds also hash the item ids, which follow the
    items of the seeds imported before in the same database: ``--replay-from`` imports those first."""
    make_room(seed)
    return make_project(rows, name=f"bench certified {seed}", audit_rate=audit_rate, budget=0.0, batch_reviews=step,
                        target=target, created_at=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=seed))


def certified(rows: list[dict], seeds: int, target: float, batch: float, log,
              audit_rate: float | None = None, first_seed: int = 0,
              replay_from: int | None = None, until_reviewed: float | None = None) -> tuple[dict, dict]:
    """The default policy with a target: when does the app declare the target reached, and did it hold?
    ``replay_from``: import the projects of seeds ``replay_from`` .. ``first_seed`` - 1 first, without running them, so
    the seeds run get the item ids they had in a process started at ``replay_from``. ``until_reviewed``: end each
    seed once this share of the items is reviewed (a diagnostic run for the per-round log lines; a seed ended so
    does not count as held)."""
    from annotation.models import Item, Project, Review, Status
    from annotation.selection import selection_run_round
    from annotation.selection.estimates import accuracy_estimate

    n = len(rows)
    step = max(1, round(batch * n))
    llm_correct = sum(r["llm_label"] == r["gold"] for r in rows)
    at_stop, true_at_stop, phases, hindsight, declared, auto_before, moved = [], [], [], [], [], [], []
    bound_checks, audit_checks = [], []  # per round after calibration: (lower bound, truth); (interval, truth)

    def truth(project, row_of) -> tuple[float | None, float | None]:
        """(true accuracy of the curated dataset, of the auto-accepted items alone), gold known."""
        kept = Item.objects.filter(project=project, status__in=(Status.ACCEPTED, Status.AUTO_ACCEPTED))
        right = [((final if status == Status.ACCEPTED else proposed) == [rows[row_of[pk]]["gold"]], status)
                 for pk, status, final, proposed in kept.values_list("pk", "status", "final_labels",
                                                                    "proposed_labels")]
        auto = [ok for ok, status in right if status == Status.AUTO_ACCEPTED]
        return (sum(ok for ok, _ in right) / len(right) if right else None,
                sum(auto) / len(auto) if auto else None)

    for seed in range(first_seed if replay_from is None else replay_from, first_seed):
        seeded_project(rows, seed=seed, target=target, step=step, audit_rate=audit_rate)
    for seed in range(first_seed, first_seed + seeds):
        project, reviewer = seeded_project(rows, seed=seed, target=target, step=step, audit_rate=audit_rate)
        row_of = row_index(project)
        run = {"reviews": 0, "correct": llm_correct, "hindsight": 0 if llm_correct / n >= target else None}

        def on_review(i, run=run):
            # Hindsight with gold: curated accuracy if every reviewed item is right and the rest keep the LLM's label.
            run["reviews"] += 1
            run["correct"] += rows[i]["llm_label"] != rows[i]["gold"]
            if run["hindsight"] is None and run["correct"] / n >= target:
                run["hindsight"] = run["reviews"]

        ever_auto: set[int] = set()
        phase, unreliable_at = None, None
        while True:
            started = time.monotonic()
            selection_run_round(project=project, trigger="reviews")
            state = Project.objects.get(pk=project.pk).routing_state
            phase = state.get("phase")
            ever_auto.update(Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED)
                             .values_list("pk", flat=True))
            curated, auto_truth = truth(project, row_of)
            if state.get("lower_bound") is not None and curated is not None:
                bound_checks.append((state["lower_bound"], curated))
            # What the Routing page and the dashboard show: the project as saved, with this round's region (a round
            # on a large project routes on its own copy, so ``project`` may hold the previous round's state).
            shown = accuracy_estimate(project=Project.objects.get(pk=project.pk))
            if shown.auto_accepted_interval is not None and auto_truth is not None and shown.audits.n >= 10:
                audit_checks.append((shown.auto_accepted_interval, auto_truth))
            log(f"certified seed {seed}: {time.monotonic() - started:.1f} s, reviews {run['reviews'] / n:.3f}, "
                f"phase {phase}, lower bound {state.get('lower_bound')}, auto-accepted {state.get('auto_accepted')}, "
                f"region {state.get('region')}, true {curated}, auto true {auto_truth}")
            if phase == "unreliable":
                unreliable_at = run["reviews"]
            if phase in ("reached", "unreliable"):
                break
            if until_reviewed is not None and run["reviews"] >= until_reviewed * n:
                phase = "ended"
                break
            if review_queue(project, reviewer, rows, row_of, on_review, at_most=step) == 0:
                break  # nothing to review and no new reviews: the next round would decide the same
        true_accuracy = None
        if phase == "reached":
            true_accuracy = round(truth(project, row_of)[0], 4)
        # Churn: how often rounds moved an item from auto-accepted back to review (each move a Review row).
        swings = Review.objects.filter(project=project, before__status=Status.AUTO_ACCEPTED,
                                       after__status=Status.NEEDS_REVIEW).count()
        log(f"certified seed {seed}: stopped {phase} after {run['reviews']} reviews, true accuracy {true_accuracy}, "
            f"hindsight {run['hindsight']}, ever auto-accepted {len(ever_auto)}, auto-accepted -> review {swings}")
        moved.append(swings)
        at_stop.append(round(run["reviews"] / n, 4))
        true_at_stop.append(true_accuracy)
        phases.append(phase)
        if run["hindsight"] is not None:
            hindsight.append(run["hindsight"] / n)
        if unreliable_at is not None:
            declared.append(unreliable_at / n)
        auto_before.append(len(ever_auto) / n)
    result = {
        "target": target, "seeds": seeds, "first_seed": first_seed, "reviews_at_stop": at_stop,
        "true_accuracy_at_stop": true_at_stop,
        "phases": phases,
        "held": round(sum(a is not None and a >= target for a in true_at_stop) / seeds, 4),
        "median_reviews_at_stop": round(statistics.median(at_stop), 4),
        "hindsight_reviews": round(statistics.median(hindsight), 4) if hindsight else None,
        "auto_accepted_to_review": moved,
    }
    # Coverage over every round, not only the first: how often the declared lower bound was at or below the curated
    # dataset's true accuracy, and how often the audits' 95% interval held the auto-accepted items' true accuracy.
    result["bound_coverage"] = {"rounds": len(bound_checks), "held": round(
        sum(lower <= true + 1e-9 for lower, true in bound_checks) / len(bound_checks), 4) if bound_checks else None}
    result["audit_coverage_over_rounds"] = {"rounds": len(audit_checks), "held": round(
        sum(low <= true <= high for (low, high), true in audit_checks) / len(audit_checks), 4) if audit_checks
        else None}
    unreliable = {"declared_after_reviews": round(statistics.median(declared), 4) if declared else None,
                  "auto_accepted_before_declared": round(max(auto_before), 4)}
    return result, unreliable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--seeds", type=int, default=20, help="projects for audit coverage")
    parser.add_argument("--batch", type=float, default=0.02, help="share of items reviewed per step")
    parser.add_argument("--weak-labels", type=int, default=0, help="make llm_label with a weak classifier on N rows")
    parser.add_argument("--limit", type=int, default=0, help="use a random sample of this many rows")
    parser.add_argument("--certified", action="store_true", help="also run the target-mode stop over --seeds projects")
    parser.add_argument("--target", type=float, default=0.98, help="target accuracy for --certified")
    parser.add_argument("--audit-rate", type=float, default=None,
                        help="with --certified: the projects' audit rate (default: the app's default)")
    parser.add_argument("--curve-seed", type=int, default=0, help="the budget-mode curve's seed (its project id - 1)")
    parser.add_argument("--replay-from", type=int, default=None,
                        help="with --certified: import seeds from this one up to --first-seed first, unrun, so each "
                             "seed gets the item ids it had in a process started there")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="with --certified: the first seed (run seeds side by side in separate processes)")
    parser.add_argument("--until-reviewed", type=float, default=None,
                        help="with --certified: end each seed once this share is reviewed (diagnostic runs)")
    parser.add_argument("--certified-only", action="store_true",
                        help="with --certified: skip the budget-mode curve and the audit coverage")
    args = parser.parse_args()

    def log(message):
        print(message, flush=True)

    with tempfile.TemporaryDirectory(prefix="ss-bench-") as var_dir:
        setup_django(folder=var_dir, migrate=True)
        rows = read_rows(args.path, args.weak_labels, args.limit, seed=0)
        n = len(rows)
        llm_accuracy = round(sum(r["llm_label"] == r["gold"] for r in rows) / n, 4)
        log(f"{args.path.name}: {n} rows, LLM accuracy {llm_accuracy}")
        result = {"dataset": args.path.name, "n": n, "llm_accuracy": llm_accuracy}
        if not (args.certified and args.certified_only):
            started = time.monotonic()
            reviews_to = learning_curve(rows, args.batch, log, seed=args.curve_seed)
            log(f"curve took {time.monotonic() - started:.0f} s")
            coverage = audit_coverage(rows, args.seeds, log) if args.seeds else None
            result |= {"reviews_to": reviews_to, "baselines": baselines(rows, seed=0), "audit_coverage": coverage}
        if args.weak_labels:
            result["weak_labels"] = args.weak_labels
        if args.certified:
            result["certified"], result["unreliable"] = certified(rows, args.seeds, args.target, args.batch, log,
                                                                   audit_rate=args.audit_rate,
                                                                   first_seed=args.first_seed,
                                                                   replay_from=args.replay_from,
                                                                   until_reviewed=args.until_reviewed)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
