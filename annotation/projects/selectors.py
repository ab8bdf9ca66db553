"""Reads scoped to what a user may see, and the consistency check of items against their project's label schema."""
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.items.counts import ItemCounts, item_counts, item_counts_detail
from annotation.models import (
    HUMAN_DECISIONS,
    AttributeDimension,
    ImportJob,
    Item,
    Label,
    Membership,
    Project,
    Review,
    ReviewAction,
    ScoringRound,
    Status,
)

# The home page counts a project's items up to this many and shows more as "1000+": an exact count reads every item
# (seconds at a million items, for each project listed); the project page has the exact figures.
HOME_COUNT_CAP = 1000


def _count_upto(condition: str = "") -> RawSQL:
    """How many live items the outer project has, reading at most ``HOME_COUNT_CAP + 1`` of them."""
    table = Item._meta.db_table
    return RawSQL(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} i WHERE i.project_id = {Project._meta.db_table}.id "
        f"AND i.archived_at IS NULL {condition} LIMIT %s) AS capped",
        (HOME_COUNT_CAP + 1,),
    )


def projects_for_user(*, user) -> QuerySet[Project]:
    """The user's projects with item counts (capped at ``HOME_COUNT_CAP + 1``), in one query."""
    qs = Project.objects.filter(archived_at__isnull=True)
    if not user.is_superuser:
        qs = qs.filter(memberships__user=user)
    # Each count stops after HOME_COUNT_CAP + 1 rows, whichever scan PostgreSQL picks for it.
    return qs.annotate(
        n_items=_count_upto(),
        n_needs_review=_count_upto(f"AND i.status = '{Status.NEEDS_REVIEW}'"),
    ).order_by("name", "id")


def project_roles(*, user, projects) -> dict[int, str]:
    return dict(
        Membership.objects.filter(user=user, project__in=projects).values_list("project_id", "role")
    )


def project_members(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")


def project_membership_get(*, project: Project, membership_id: int) -> Membership:
    """The membership, or 404 when it belongs to another project."""
    return get_object_or_404(Membership.objects.select_related("user"), pk=membership_id, project=project)


def project_labels(*, project: Project) -> list[Label]:
    return list(Label.objects.filter(project=project))


def project_label_get(*, project: Project, label_id: int) -> Label:
    return get_object_or_404(Label, pk=label_id, project=project)


def project_dimensions(*, project: Project) -> list[AttributeDimension]:
    return list(AttributeDimension.objects.filter(project=project))


def project_dimension_get(*, project: Project, dimension_id: int) -> AttributeDimension:
    return get_object_or_404(AttributeDimension, pk=dimension_id, project=project)


def project_status_counts(*, project: Project) -> dict[str, int]:
    """Live items per status, exact, from the counters the database keeps (annotation/items/counts.py): a few rows
    read whatever the project's size."""
    return item_counts(project_id=project.pk)


def project_label_names(*, project: Project) -> list[str]:
    return list(Label.objects.filter(project=project).values_list("name", flat=True))


# Label names cannot contain "|" (annotation/projects/schema.py: LABEL_SEPARATOR), so a multi-label project's model label,
# one class per label set joined by it (annotation/selection/rounds.py: label_key), splits back into names unambiguously.
MODEL_LABEL_SEPARATOR = "|"
UNKNOWN_LABELS_CHUNK = 2000


@dataclass
class UnknownLabels:
    """Items that carry label names the project's schema does not have: ``count`` items, the first few as
    ``examples`` (item id, the unknown names sorted)."""

    count: int = 0
    examples: list[tuple[int, list[str]]] = field(default_factory=list)


def project_items_with_unknown_labels(*, project: Project, examples: int = 10) -> UnknownLabels:
    """Every item (archived ones too) whose proposed or final labels, LLM vote keys or model label name a label the
    project does not have. Zero after any interleaving of label renames, merges and deletes.

    JSON containment is not portable to SQLite, so this scans the project's items once in chunks: it serves checks
    (tests, an admin command), not pages.
    """
    known = set(project_label_names(project=project))
    rows = (
        Item.objects.filter(project=project)
        .values_list("id", "proposed_labels", "final_labels", "llm_votes", "model_label")
        .order_by("id")
    )
    found = UnknownLabels()
    for item_id, proposed, final, votes, model_label in rows.iterator(chunk_size=UNKNOWN_LABELS_CHUNK):
        names = {*(proposed or ()), *(final or ()), *(votes or {})}
        if model_label:
            names.update(model_label.split(MODEL_LABEL_SEPARATOR))
        unknown = names - known
        if unknown:
            found.count += 1
            if len(found.examples) < examples:
                found.examples.append((item_id, sorted(unknown)))
    return found


# --- The overview: the project's pipeline, its target, the review queue's pace, what ran lately ---

# The team's pace is read over these windows: the last hour when people reviewed in it, else the last day.
PACE_HOUR = timedelta(hours=1)
PACE_DAY = timedelta(days=1)
OVERVIEW_RECENT = 5
# The statuses in the words the overview uses (the enum's own labels are terse).
STATUS_WORDS = {
    Status.PROPOSED: "Waiting for routing",
    Status.NEEDS_REVIEW: "Waiting for review",
    Status.AUTO_ACCEPTED: "Auto-accepted",
    Status.ACCEPTED: "Accepted by a person",
    Status.REJECTED: "Rejected",
    Status.FILTERED: "Held back by filters",
}


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: ``state`` is done / now (the first step not done) / later; ``action`` the URL name
    of the page that does the next thing, ``action_text`` what to do there."""

    title: str
    state: str
    summary: str
    action_text: str = ""
    action: str = ""


@dataclass(frozen=True)
class Pace:
    """Human reviews (accept, edit, reject; undone ones taken back) in the last hour and day, and the review queue's
    expected time to empty at the pace of whichever window has reviews (the hour first)."""

    last_hour: int
    last_day: int
    waiting: int

    @property
    def per_hour(self) -> float | None:
        if self.last_hour > 0:
            return float(self.last_hour)
        if self.last_day > 0:
            return self.last_day / 24
        return None

    @property
    def basis(self) -> str:
        return "the last hour" if self.last_hour > 0 else "the last 24 hours"

    @property
    def eta_hours(self) -> float | None:
        """None when nobody reviewed in the last day: no pace, no estimate."""
        rate = self.per_hour
        return None if rate is None or not self.waiting else self.waiting / rate

    @property
    def eta_text(self) -> str:
        hours = self.eta_hours
        if hours is None:
            return ""
        if hours < 1:
            return f"about {max(1, round(hours * 60))} minutes"
        if hours < 48:
            return f"about {hours:.1f} hours" if hours < 10 else f"about {round(hours)} hours"
        return f"about {hours / 24:.1f} days"


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]
    total: int
    steps: list[Step]
    pace: Pace
    reviewed: int
    verified: int
    jobs: list
    imports: list
    rounds: list
    running: bool

    @property
    def review_share(self) -> float:
        """People's decisions among the items that need or had a person: the queue's progress bar."""
        whole = self.reviewed + self.pace.waiting
        return self.reviewed / whole if whole else 0.0

    @property
    def empty(self) -> bool:
        return self.total == 0

    @property
    def status_rows(self) -> list[tuple[str, int]]:
        return [(STATUS_WORDS[status], self.counts[status]) for status in STATUS_WORDS]


def project_overview(*, project: Project) -> Overview:
    """Everything the project's overview shows, in a fixed number of queries whatever the project's size: the item
    counters (per status, and by source, labelling and scoring for the pipeline's counts; no item is read), the last
    day's human reviews, and the latest jobs, imports and scoring rounds. Generation jobs are read through the
    project's reverse relation, so that ``annotation`` does not import ``generation``."""
    detail = item_counts_detail(project_id=project.pk)
    counts = detail.by_status
    row = _pipeline_counts(detail)
    pace = _team_pace(project=project, waiting=counts[Status.NEEDS_REVIEW])
    state = project.routing_state or {}
    reviewed = counts[Status.ACCEPTED] + counts[Status.REJECTED]
    verified = counts[Status.ACCEPTED] + (counts[Status.AUTO_ACCEPTED] if state.get("phase") == "reached" else 0)
    jobs = list(project.generation_jobs.order_by("-id")[:OVERVIEW_RECENT])
    imports = list(ImportJob.objects.filter(project=project).order_by("-id")[:OVERVIEW_RECENT])
    rounds = list(ScoringRound.objects.filter(project=project).order_by("-id")[:OVERVIEW_RECENT])
    running = (any(job.is_active for job in jobs)
               or any(job.state in IMPORT_ACTIVE for job in imports)
               or any(r.state == ScoringRound.State.RUNNING for r in rounds)
               or project.round_requested_at is not None)
    return Overview(
        counts=counts, total=row["total"], pace=pace, reviewed=reviewed, verified=verified, jobs=jobs,
        imports=imports, rounds=rounds, running=running,
        steps=_steps(row=row, counts=counts, state=state, verified=verified,
                     labels=Label.objects.filter(project=project).count()),
    )


def _pipeline_counts(detail: ItemCounts) -> dict[str, int]:
    """The pipeline's counts of live items: imported; generated (not imported) and not held back by filters; with an
    LLM proposal; without one and waiting for routing; with a routing score."""
    return {
        "total": detail.total,
        "imported": detail.count(imported=True),
        "generated": detail.count(imported=False) - detail.count(imported=False, status=Status.FILTERED),
        "unlabelled": detail.count(labelled=False, status=Status.PROPOSED),
        "labelled": detail.count(labelled=True),
        "scored": detail.count(scored=True),
    }


IMPORT_ACTIVE = (ImportJob.State.QUEUED, ImportJob.State.VALIDATING, ImportJob.State.IMPORTING)


def _team_pace(*, project: Project, waiting: int) -> Pace:
    now = timezone.now()
    decided = Q(action__in=HUMAN_DECISIONS)
    undone = Q(action=ReviewAction.UNDO)
    recent = Review.objects.filter(project=project, user__isnull=False, created_at__gte=now - PACE_DAY)
    row = recent.aggregate(
        day=Count("id", filter=decided), undone_day=Count("id", filter=undone),
        hour=Count("id", filter=decided & Q(created_at__gte=now - PACE_HOUR)),
        undone_hour=Count("id", filter=undone & Q(created_at__gte=now - PACE_HOUR)),
    )
    return Pace(last_hour=max(row["hour"] - row["undone_hour"], 0), last_day=max(row["day"] - row["undone_day"], 0),
                waiting=waiting)


def _steps(*, row: dict, counts: dict, state: dict, verified: int, labels: int) -> list[Step]:
    """The pipeline, each step with its counts and the next action; the first step not done is "now"."""
    phase = state.get("phase")
    calibration = state.get("calibration") or {}
    pool = row["total"] - counts[Status.FILTERED]
    waiting = counts[Status.NEEDS_REVIEW]
    steps = [
        ("Labels defined", labels >= 2, f"{labels} label{'s' if labels != 1 else ''}",
         "Define at least two labels", "labels"),
        ("Pool imported or generated", pool > 0,
         f"{row['imported']} imported, {row['generated']} generated" + (
             f", {counts[Status.FILTERED]} held back by filters" if counts[Status.FILTERED] else ""),
         "Import a file or start a generation job", "import"),
        ("Labelled by the LLM", pool > 0 and row["unlabelled"] == 0,
         f"{row['labelled']} with a proposed label, {row['unlabelled']} without",
         "Start a labelling job for the pool", "generation_start"),
        ("Calibrated", phase not in (None, "calibrating"),
         (f"{calibration.get('done', 0)} of {calibration.get('size', 0)} calibration items reviewed"
          if calibration else f"{row['scored']} items scored; no scoring round yet"),
         "Review the calibration sample" if phase == "calibrating" else "Score and route the items", "routing"),
        ("In review", phase not in (None, "calibrating") and waiting == 0,
         f"{waiting} waiting for review, {counts[Status.ACCEPTED]} accepted, {counts[Status.REJECTED]} rejected",
         "Open the review queue", "queue"),
        ("Target reached", phase == "reached",
         {"reached": "reached with 95% confidence", "unreliable": "the LLM's labels are not reliable enough",
          "not_yet": f"not yet: about {state.get('remaining', '?')} more reviews expected",
          "calibrating": "not yet: calibrating"}.get(phase, "not known before the first scoring round"),
         "See what routing decided", "routing"),
        ("Exported", False, f"{verified} verified item{'s' if verified != 1 else ''} ready",
         "Download the dataset", "export"),
    ]
    shown, current_found = [], False
    for title, done, summary, action_text, action in steps:
        if done:
            step_state = "done"
        elif not current_found:
            step_state, current_found = "now", True
        else:
            step_state = "later"
        shown.append(Step(title=title, state=step_state, summary=summary, action_text=action_text, action=action))
    return shown
