"""The one place that decides who may see and do what in a project.

Every view is wrapped in one of the decorators below; each marks the view with ``access_role`` so that the permission
test generated from the URLconf knows what to expect and fails on a view that forgot to declare it.

- ``public_view``: anyone (the login page).
- ``user_view``: any signed-in user (the home page lists only their own projects).
- ``project_view("member")``: a lead or annotator of the project in the URL.
- ``project_view("lead")``: a lead of that project.

Non-members get 404, not 403, so a project's existence does not leak; an annotator on a lead page gets 403.
Superusers act as leads everywhere.
"""
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404

from annotation.models import Membership, Project, Role

MEMBER = "member"
LEAD = "lead"


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: str

    @property
    def is_lead(self) -> bool:
        return self.role == Role.LEAD


def project_access(*, user, project_id: int, need: str = MEMBER) -> ProjectAccess:
    """Return the project and the user's role in it, or raise Http404 / PermissionDenied. One query."""
    membership = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    project = (
        Project.objects.filter(pk=project_id, archived_at__isnull=True)
        .annotate(viewer_role=Subquery(membership))
        .first()
    )
    if project is None:
        raise Http404("No such project")
    role = Role.LEAD if user.is_superuser else project.viewer_role
    if role is None:
        raise Http404("No such project")
    if need == LEAD and role != Role.LEAD:
        raise PermissionDenied("Only a project lead can do this")
    return ProjectAccess(project=project, role=role)


def project_view(need: str):
    """Decorate ``view(request, access, ...)`` taking ``project_id`` from the URL."""
    if need not in (MEMBER, LEAD):
        raise ValueError(f"unknown access level {need!r}")

    def decorator(view):
        @wraps(view)
        def wrapper(request, project_id, *args, **kwargs):
            access = project_access(user=request.user, project_id=project_id, need=need)
            return view(request, access, *args, **kwargs)

        guarded = login_required(wrapper)
        guarded.access_role = need
        return guarded

    return decorator


def user_view(view):
    guarded = login_required(view)
    guarded.access_role = "user"
    return guarded


def public_view(view):
    view.access_role = "public"
    return view
