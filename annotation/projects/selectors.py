"""Reads scoped to what a user may see."""
from django.db.models import Count, QuerySet
from django.db.models.expressions import RawSQL

from annotation.models import Item, Label, Membership, Project, Status

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
