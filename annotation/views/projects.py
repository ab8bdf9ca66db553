"""Pages for projects and their members. Views stay thin: access -> form -> service -> render or redirect."""
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation import ratelimit, selectors, services
from annotation.forms import MemberAddForm, MemberRoleForm, ProjectCreateForm
from annotation.models import Membership
from annotation.permissions import LEAD, MEMBER, project_view, public_view, user_view

login = public_view(ratelimit.ThrottledLoginView.as_view())
logout = user_view(auth_views.LogoutView.as_view())


@user_view
def home(request):
    projects = list(selectors.projects_for_user(user=request.user))
    roles = selectors.project_roles(user=request.user, projects=projects)
    rows = [(p, "lead" if request.user.is_superuser else roles.get(p.id)) for p in projects]
    return render(request, "annotation/home.html", {"rows": rows, "cap": selectors.HOME_COUNT_CAP})


@user_view
def project_create(request):
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(lead=request.user, **form.cleaned_data)
        messages.success(request, f"Project '{project.name}' created. Add labels next.")
        return redirect("project_detail", project_id=project.id)
    return render(request, "annotation/project_create.html", {"form": form})


@project_view(MEMBER)
def project_detail(request, access):
    counts = selectors.project_status_counts(project=access.project)
    return render(request, "annotation/project_detail.html", {"access": access, "project": access.project,
                                                              "counts": counts})


@project_view(LEAD)
def members(request, access):
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.membership_add(project=access.project, **form.cleaned_data)
        except services.ServiceError as exc:
            form.add_error("identifier", str(exc))
        else:
            messages.success(request, f"{membership.user.username} is now {membership.get_role_display().lower()}.")
            if not request.htmx:
                return redirect("members", project_id=access.project.id)
            form = MemberAddForm()
    return _render_members(request, access, form)


@require_POST
@project_view(LEAD)
def member_update(request, access, membership_id):
    membership = get_object_or_404(Membership, pk=membership_id, project=access.project)
    form = MemberRoleForm(request.POST)
    try:
        if request.POST.get("remove"):
            services.membership_remove(membership=membership)
            messages.success(request, f"{membership.user.username} was removed from the project.")
        elif form.is_valid():
            services.membership_set_role(membership=membership, role=form.cleaned_data["role"])
            messages.success(request, f"{membership.user.username} is now {membership.get_role_display().lower()}.")
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    if not request.htmx:
        return redirect("members", project_id=access.project.id)
    return _render_members(request, access, MemberAddForm())


def _render_members(request, access, form):
    context = {"access": access, "project": access.project, "form": form,
               "members": selectors.project_members(project=access.project)}
    template = "annotation/_members_panel.html" if request.htmx else "annotation/members.html"
    return render(request, template, context)
