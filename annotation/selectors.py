"""Reads scoped to what a user may see."""
from django.db.models import Count, Q, QuerySet

from annotation.models import Item, Membership, Project, Status


def projects_for_user(*, user) -> QuerySet[Project]:
    """The user's projects with their role and item counts by status, in one query."""
    qs = Project.objects.filter(archived_at__isnull=True)
    if not user.is_superuser:
        qs = qs.filter(memberships__user=user)
    return qs.annotate(
        n_items=Count("items", filter=Q(items__archived_at__isnull=True), distinct=True),
        n_needs_review=Count("items", filter=Q(items__status=Status.NEEDS_REVIEW), distinct=True),
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
