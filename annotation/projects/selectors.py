"""Reads scoped to what a user may see, and the consistency check of items against their project's label schema."""
from dataclasses import dataclass, field

from django.db.models import Count, QuerySet
from django.db.models.expressions import RawSQL
from django.shortcuts import get_object_or_404

from annotation.models import AttributeDimension, Item, Label, Membership, Project, Status

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
    rows = (
        Item.objects.filter(project=project, archived_at__isnull=True)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {status: 0 for status in Status.values}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


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
