"""The lead's dashboard: what the page reads, what the background job computes, and how the two meet.

The page (``dashboard_page``) runs a fixed handful of queries whatever the size of the project: live status counts
(an index-only GROUP BY) and the cached ``DashboardSnapshot`` rows. Everything else is computed by
``dashboard_compute`` in a Celery task (annotation/dashboard/tasks.py), with GROUP BY in the database and bounded
samples where a measure needs the texts (annotation/dashboard/metrics.py does the arithmetic). A page that finds its snapshots
missing or older than ``SNAPSHOT_MAX_AGE`` asks for a refresh; ``pending_since`` makes that ask happen once.
"""
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotation.dashboard import metrics
from annotation.models import (
    HUMAN_DECISIONS,
    AttributeDimension,
    DashboardSnapshot,
    EvaluationRun,
    Item,
    Label,
    Project,
    Review,
    ReviewAction,
    Source,
    Status,
)
from annotation.projects.selectors import project_status_counts
from annotation.selection import accuracy_estimate
from synthstudio.lib.sampling import Reservoir

log = logging.getLogger(__name__)

Kind = DashboardSnapshot.Kind
SNAPSHOT_MAX_AGE = timedelta(minutes=5)
# A refresh whose worker died never clears ``pending_since``; after this long the page may ask again.
PENDING_TIMEOUT = timedelta(minutes=30)
# Texts per group (label, job) for the text-based diversity measures; equal sizes keep groups comparable.
DIVERSITY_SAMPLE = 1000
# Diversity is traced over the most recent jobs only.
MAX_JOBS = 20
ACTIVITY_DAYS = 30
# Agreement reads the overlap reviews themselves; beyond this many (most recent first) it stops.
MAX_AGREEMENT_REVIEWS = 200_000
# Generated items name the attribute values they were written for in provenance["conditions"]["attributes"][name]
# (generation/services.py).
_ID_CHUNK = 1000


def labels_shown(labels: Iterable[str]) -> str:
    """How a chart names a list of labels: the label itself, or ``a + b`` for a multi-label set."""
    return " + ".join(labels) or metrics.NO_LABEL


# ---------------------------------------------------------------------------------------------------------------------
# The page


@dataclass(frozen=True)
class DashboardPage:
    status_counts: dict[str, int]
    overview: DashboardSnapshot | None
    quality: DashboardSnapshot | None
    evaluations: list[EvaluationRun]

    @property
    def snapshots(self) -> list[DashboardSnapshot]:
        return [s for s in (self.overview, self.quality) if s is not None]

    @property
    def total(self) -> int:
        return sum(self.status_counts.values())

    @property
    def pending(self) -> bool:
        return any(s is not None and s.pending_since is not None for s in (self.overview, self.quality))

    @property
    def stale(self) -> bool:
        oldest = timezone.now() - SNAPSHOT_MAX_AGE
        return any(s is None or s.computed_at is None or s.computed_at < oldest for s in (self.overview, self.quality))


def dashboard_page(*, project: Project, evaluations: int = 5) -> DashboardPage:
    """What the dashboard page shows, in three queries whatever the size of the project."""
    snapshots = {s.kind: s for s in DashboardSnapshot.objects.filter(project=project)}
    return DashboardPage(
        status_counts=project_status_counts(project=project),
        overview=snapshots.get(Kind.OVERVIEW),
        quality=snapshots.get(Kind.QUALITY),
        evaluations=evaluation_runs_recent(project=project, limit=evaluations),
    )


def evaluation_runs_recent(*, project: Project, limit: int = 5) -> list[EvaluationRun]:
    return list(EvaluationRun.objects.filter(project=project).defer("gold").order_by("-id")[:limit])


# ---------------------------------------------------------------------------------------------------------------------
# Refresh: ask, compute, store


def dashboard_refresh_request(*, project: Project, force: bool = False) -> bool:
    """Queue a recomputation of the project's snapshots unless one is already pending (or, without ``force``, they
    are fresh). Returns whether a task was queued."""
    from annotation.dashboard.tasks import dashboard_refresh  # the task module imports this one

    now = timezone.now()
    DashboardSnapshot.objects.bulk_create(
        [DashboardSnapshot(project=project, kind=kind) for kind in Kind.values], ignore_conflicts=True
    )
    due = DashboardSnapshot.objects.filter(project=project).filter(
        Q(pending_since__isnull=True) | Q(pending_since__lt=now - PENDING_TIMEOUT)
    )
    if not force:
        due = due.filter(Q(computed_at__isnull=True) | Q(computed_at__lt=now - SNAPSHOT_MAX_AGE))
    if not due.update(pending_since=now):
        return False
    dashboard_refresh.delay_on_commit(project.id)
    return True


def dashboard_compute(*, project_id: int) -> None:
    """Recompute every snapshot of the project and store it; safe to run twice (the last run wins)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return
    for kind, compute in ((Kind.OVERVIEW, overview_compute), (Kind.QUALITY, quality_compute)):
        started = time.monotonic()
        try:
            data, error = compute(project=project), ""
        except Exception as exc:  # one failed kind must not hide the others; the page shows the error
            log.exception("dashboard %s of project %s failed", kind, project_id)
            data, error = None, f"{type(exc).__name__}: {exc}"
        fields = {"computed_at": timezone.now(), "duration_s": round(time.monotonic() - started, 3),
                  "pending_since": None, "error": error}
        if data is not None:
            fields["data"] = data
        with transaction.atomic():
            DashboardSnapshot.objects.update_or_create(project=project, kind=kind, defaults=fields)


# ---------------------------------------------------------------------------------------------------------------------
# Overview: counts, coverage, review rates and activity, routing, estimated accuracy


def _decisions(project: Project) -> QuerySet[Review]:
    """People's accept/edit/reject reviews that were not taken back by an undo.

    An undo is logged by the same user on the same item, starting from the version the undone review produced
    (annotation/queue/services.py: item_undo).
    """
    undone = Review.objects.filter(
        item_id=OuterRef("item_id"), user_id=OuterRef("user_id"), action=ReviewAction.UNDO,
        before__version=OuterRef("after__version"),
    )
    return Review.objects.filter(project=project, user__isnull=False, action__in=HUMAN_DECISIONS).exclude(
        Exists(undone)
    )


def _live_items(project: Project) -> QuerySet[Item]:
    return Item.objects.filter(project=project, archived_at__isnull=True)


def overview_compute(*, project: Project) -> dict:
    """The overview numbers, each from one GROUP BY (one per attribute dimension for coverage)."""
    labels = list(Label.objects.filter(project=project).values_list("name", flat=True))
    status_counts = project_status_counts(project=project)

    by_status_label: dict[str, Counter] = defaultdict(Counter)
    rows = _live_items(project).values("status", "final_labels", "proposed_labels").annotate(n=Count("id")).order_by()
    for row in rows:
        current = row["final_labels"] or row["proposed_labels"]
        for name in current or [metrics.NO_LABEL]:
            by_status_label[name][row["status"]] += row["n"]
    sources = dict(_live_items(project).values_list("source").annotate(n=Count("id")).order_by())

    decisions = _decisions(project)
    by_label_action = Counter()
    for row in decisions.values("item__proposed_labels", "action").annotate(n=Count("id")).order_by():
        by_label_action[(labels_shown(row["item__proposed_labels"] or []), row["action"])] += row["n"]
    per_user = [
        {"user": row["user__username"], "accept": row["accept"], "edit": row["edit"], "reject": row["reject"],
         "n": row["accept"] + row["edit"] + row["reject"]}
        for row in decisions.values("user__username").annotate(
            accept=Count("id", filter=Q(action=ReviewAction.ACCEPT)),
            edit=Count("id", filter=Q(action=ReviewAction.EDIT)),
            reject=Count("id", filter=Q(action=ReviewAction.REJECT)),
        ).order_by("user__username")
    ]
    since = timezone.now() - timedelta(days=ACTIVITY_DAYS)
    per_day = [
        {"day": row["day"].isoformat(), "n": row["n"]}
        for row in decisions.filter(created_at__gte=since).annotate(day=TruncDate("created_at"))
        .values("day").annotate(n=Count("id")).order_by("day")
    ]
    return {
        "labels": labels,
        "status_counts": status_counts,
        "source_counts": {s: sources.get(s, 0) for s in Source.values},
        "label_status": {name: dict(c) for name, c in sorted(by_status_label.items(), key=_label_order(labels))},
        "coverage": coverage_compute(project=project, labels=labels),
        "rates": metrics.review_rates(by_label_action),
        "per_user": per_user,
        "per_day": per_day,
        "routing": metrics.routing(status_counts, human_reviews=sum(u["n"] for u in per_user)),
        "accuracy": audit_accuracy_estimate(project=project),
    }


def _label_order(labels: list[str]):
    order = {name: i for i, name in enumerate(labels)}
    return lambda pair: (order.get(pair[0], len(order)), pair[0])


def coverage_compute(*, project: Project, labels: list[str]) -> list[dict]:
    """Label x value grids, one per attribute dimension, over items that may end up in the dataset."""
    grids = []
    usable = _live_items(project).exclude(status__in=(Status.FILTERED, Status.REJECTED))
    for dimension in AttributeDimension.objects.filter(project=project):
        value = KeyTextTransform(dimension.name, KeyTransform("attributes", KeyTransform("conditions", "provenance")))
        counts = Counter()
        rows = (
            usable.annotate(value=value).filter(value__isnull=False)
            .values("value", "final_labels", "proposed_labels").annotate(n=Count("id")).order_by()
        )
        for row in rows:
            for name in (row["final_labels"] or row["proposed_labels"]) or [metrics.NO_LABEL]:
                counts[(name, row["value"])] += row["n"]
        grid = metrics.coverage(counts, labels, [str(v) for v in dimension.values])
        grids.append({"dimension": dimension.name, **grid})
    return grids


def audit_accuracy_estimate(*, project: Project) -> dict:
    """The selection module's audit-based estimate (annotation/selection/estimates.py) for the dashboard: accuracy of
    auto-accepted items and of the whole dataset, each with its 95% Clopper-Pearson interval, plus the audits still
    waiting."""
    estimate = accuracy_estimate(project=project)
    auto = estimate.auto_accepted_interval or (None, None)
    dataset = estimate.dataset_interval or (None, None)
    waiting = _live_items(project).filter(is_audit=True, status=Status.NEEDS_REVIEW).count()
    return {
        "n": estimate.audits.n,
        "kind": estimate.audits.kind,  # "audits" or "random checks" (calibration items and audits)
        "correct": estimate.audits.successes,
        "waiting": waiting,
        "accuracy": estimate.auto_accepted_accuracy,
        "low": auto[0],
        "high": auto[1],
        "dataset_accuracy": estimate.dataset_accuracy,
        "dataset_low": dataset[0],
        "dataset_high": dataset[1],
        "target": project.target_accuracy,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Quality: diversity of generated data, agreement between people, LLM against people


def quality_compute(*, project: Project) -> dict:
    labels = list(Label.objects.filter(project=project).values_list("name", flat=True))
    return {
        "diversity": diversity_compute(project=project),
        "agreement": agreement_compute(project=project),
        "confusion": confusion_compute(project=project, labels=labels),
    }


def _generated(project: Project) -> QuerySet[Item]:
    """Generated items that were kept (filtered ones are duplicates, leaks or junk by definition)."""
    return _live_items(project).exclude(source=Source.IMPORTED).exclude(status=Status.FILTERED)


def diversity_compute(*, project: Project) -> dict:
    """Diversity of generated items overall, per proposed label and per job (most recent ``MAX_JOBS``).

    Exact-duplicate rates and sizes come from GROUP BY over every item. The text-based measures (distinct-n, nearest
    neighbour similarity, near-duplicates) are computed on a uniform sample of ``DIVERSITY_SAMPLE`` texts per group,
    drawn in one streamed pass over (id, label, job) and a second read of the sampled texts only.
    """
    generated = _generated(project)
    by_job = {
        row["generation_job_id"]: row
        for row in generated.filter(generation_job_id__isnull=False).values("generation_job_id")
        .annotate(n=Count("id"), distinct=Count("content_hash", distinct=True)).order_by()
    }
    jobs = sorted(by_job)[-MAX_JOBS:]
    by_label: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in generated.values("proposed_labels").annotate(
        n=Count("id"), distinct=Count("content_hash", distinct=True)
    ).order_by():
        key = labels_shown(row["proposed_labels"] or [])
        by_label[key][0] += row["n"]
        by_label[key][1] += row["distinct"]
    totals = generated.aggregate(n=Count("id"), distinct=Count("content_hash", distinct=True))

    rng = random.Random(project.pk)
    samplers: dict[tuple[str, object], Reservoir] = defaultdict(lambda: Reservoir(DIVERSITY_SAMPLE, rng))
    wanted_jobs = set(jobs)
    rows = generated.values_list("id", "proposed_labels", "generation_job_id").order_by()
    for item_id, proposed, job_id in rows.iterator(chunk_size=10_000):
        samplers[("all", None)].add(item_id)
        samplers[("label", labels_shown(proposed or []))].add(item_id)
        if job_id in wanted_jobs:
            samplers[("job", job_id)].add(item_id)
    texts = _texts(set().union(*(s.items for s in samplers.values())) if samplers else set())

    def measure(key, n: int, distinct: int) -> dict:
        sample = [texts[i] for i in samplers[key].items if i in texts] if key in samplers else []
        result = metrics.diversity(sample)
        result.update(items=n, exact_duplicate_rate=(n - distinct) / n if n else None, sample=len(sample))
        del result["n"]
        return result

    return {
        "sample_size": DIVERSITY_SAMPLE,
        "near_threshold": metrics.NEAR_DUPLICATE_COSINE,
        "overall": measure(("all", None), totals["n"], totals["distinct"]),
        "per_label": {key: measure(("label", key), n, d) for key, (n, d) in sorted(by_label.items())},
        "per_job": [{"job": job, **measure(("job", job), by_job[job]["n"], by_job[job]["distinct"])} for job in jobs],
    }


def _texts(ids: set[int]) -> dict[int, str]:
    ordered = sorted(ids)
    texts: dict[int, str] = {}
    for start in range(0, len(ordered), _ID_CHUNK):
        texts.update(Item.objects.filter(pk__in=ordered[start:start + _ID_CHUNK]).values_list("id", "text"))
    return texts


def _verdict(after: dict) -> str:
    """One reviewer's answer on an item as a nominal value: its label set, or ``rejected``."""
    if after.get("status") == Status.REJECTED:
        return "rejected"
    return labels_shown(sorted(after.get("labels") or []))


def agreement_compute(*, project: Project) -> dict:
    """Agreement between people on overlap items (those that asked for more than one review): Krippendorff's alpha
    over all of them and Cohen's kappa per pair of reviewers. A reviewer's latest decision on an item counts."""
    rows = (
        _decisions(project).filter(item__reviews_required__gte=2)
        .values_list("item_id", "user_id", "user__username", "after").order_by("-id")[:MAX_AGREEMENT_REVIEWS]
    )
    ratings: dict[int, dict[int, str]] = defaultdict(dict)
    names: dict[int, str] = {}
    for item_id, user_id, username, after in rows:
        names[user_id] = username
        ratings[item_id].setdefault(user_id, _verdict(after or {}))
    units = [list(by_user.values()) for by_user in ratings.values() if len(by_user) >= 2]
    kappa = metrics.pairwise_kappa({i: r for i, r in ratings.items() if len(r) >= 2})
    for pair in kappa["pairs"]:
        pair["raters"] = [names[r] for r in pair["raters"]]
    agreeing = sum(1 for unit in units if len(set(unit)) == 1)
    return {
        "items": len(units),
        "ratings": sum(len(unit) for unit in units),
        "percent_agreement": agreeing / len(units) if units else None,
        "alpha": metrics.krippendorff_alpha_nominal(units),
        "mean_kappa": kappa["mean_kappa"],
        "pairs": kappa["pairs"],
    }


def confusion_compute(*, project: Project, labels: list[str]) -> dict:
    """LLM labels against people's final labels, on accepted items a person decided (a biased sample: people see the
    ambiguous items, so this is lower than the dataset's accuracy)."""
    decided_by_person = Exists(
        Review.objects.filter(item_id=OuterRef("pk"), user__isnull=False, action__in=HUMAN_DECISIONS)
    )
    rows = (
        _live_items(project).filter(status=Status.ACCEPTED).filter(decided_by_person)
        .values("proposed_labels", "final_labels").annotate(n=Count("id")).order_by()
    )
    pairs = Counter()
    for row in rows:
        proposed = tuple(row["proposed_labels"] or ())
        pairs[(proposed, tuple(row["final_labels"] or proposed))] += row["n"]
    return metrics.confusion(pairs, labels, multi_label=project.multi_label)
