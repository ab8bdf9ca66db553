"""Pages that set a project up: the project list, a new project, its members, settings and review policy, labels and
attribute dimensions. Views stay thin: access -> form -> service -> render or redirect.

Each lead page has one panel that HTMX swaps (``_..._panel.html`` / ``_..._form.html``); without JavaScript every form
posts and redirects. The writes are in ``services.py`` (projects, members) and ``schema.py`` (labels, dimensions).
"""
from dataclasses import dataclass
from functools import partial
from typing import Callable

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.errors import ServiceError
from annotation.models import Label, Membership
from annotation.permissions import LEAD, MEMBER, project_view, public_view, user_view
from annotation.projects import invitations, schema, selectors, services
from annotation.projects.forms import (
    AttributeForm,
    InvitationAcceptForm,
    InvitationForm,
    LabelDeleteForm,
    LabelForm,
    MemberAddForm,
    MemberRoleForm,
    ProjectCreateForm,
    ProjectSettingsForm,
)
from synthstudio.lib.pages import render_page


@dataclass(frozen=True)
class _ListPanel:
    """A lead page listing the project's members, labels or dimensions above the form that adds one. The page is
    ``<url>.html``, the panel htmx swaps as a whole ``_<url>_panel.html``; ``rows`` is the selector of what it lists,
    passed to the templates as ``rows_as``."""

    url: str
    add_form: type[forms.Form]
    rows_as: str
    rows: Callable
    extra: Callable | None = None  # more of what the page shows, given the project (the members' invitations)

    def render(self, request, access, form: forms.Form, **context):
        extra = self.extra(project=access.project) if self.extra else {}
        return render_page(request, access, f"annotation/projects/{self.url}.html",
                           partial=f"annotation/projects/_{self.url}_panel.html", form=form,
                           **{self.rows_as: self.rows(project=access.project)}, **{**extra, **context})

    def saved(self, request, access):
        """After a change: the page again without JS (post/redirect/get); with htmx the panel, its form empty."""
        if not request.htmx:
            return redirect(self.url, project_id=access.project.id)
        return self.render(request, access, self.add_form())

    def add(self, request, access, create, *, done, error_field=None):
        form = self.add_form(request.POST or None)
        if _submitted(request, form, partial(create, project=access.project), done=done, error_field=error_field):
            return self.saved(request, access)
        return self.render(request, access, form)


def _invitations(*, project):
    return {"invitations": invitations.invitations_pending(project=project), "invite_form": InvitationForm()}


MEMBERS = _ListPanel("members", MemberAddForm, "members", selectors.project_members, extra=_invitations)
LABELS = _ListPanel("labels", LabelForm, "labels", selectors.project_labels)
DIMENSIONS = _ListPanel("attributes", AttributeForm, "dimensions", selectors.project_dimensions)


def _submitted(request, form, save, *, done, error_field=None) -> bool:
    """Whether a POSTed, valid ``form`` was taken by ``save`` (a service given the cleaned data); ``done`` of what it
    returned is then the flash message. A refusal becomes the form's error, shown next to what the lead typed."""
    if request.method != "POST" or not form.is_valid():
        return False
    try:
        result = save(**form.cleaned_data)
    except ServiceError as exc:
        form.add_error(error_field, str(exc))
        return False
    messages.success(request, done(result))
    return True


@user_view
def home(request):
    projects = list(selectors.projects_for_user(user=request.user))
    roles = selectors.project_roles(user=request.user, projects=projects)
    rows = [(p, "lead" if request.user.is_superuser else roles.get(p.id)) for p in projects]
    return render(request, "annotation/projects/home.html", {"rows": rows, "cap": selectors.HOME_COUNT_CAP})


@user_view
def project_create(request):
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(lead=request.user, **form.cleaned_data)
        messages.success(request, f"Project '{project.name}' created. Add labels next.")
        return redirect("project_detail", project_id=project.id)
    return render(request, "annotation/projects/project_create.html", {"form": form})


@project_view(MEMBER)
def project_detail(request, access):
    """The cockpit: the pipeline with the next action, the target, the queue's pace; it refreshes itself (htmx asks
    for the ``_overview.html`` fragment) while a job, an import or a scoring round runs."""
    return render_page(request, access, "annotation/projects/project_detail.html",
                       partial="annotation/projects/_overview.html",
                       overview=selectors.project_overview(project=access.project))


def _role_of(membership: Membership) -> str:
    return f"{membership.user.username} is now {membership.get_role_display().lower()}."


@project_view(LEAD)
def members(request, access):
    return MEMBERS.add(request, access, services.membership_add, done=_role_of, error_field="identifier")


@require_POST
@project_view(LEAD)
def member_update(request, access, membership_id):
    membership = selectors.project_membership_get(project=access.project, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    try:
        if request.POST.get("remove"):
            services.membership_remove(membership=membership)
            messages.success(request, f"{membership.user.username} was removed from the project.")
        elif form.is_valid():
            services.membership_set_role(membership=membership, role=form.cleaned_data["role"])
            messages.success(request, _role_of(membership))
    except ServiceError as exc:
        messages.error(request, str(exc))
    return MEMBERS.saved(request, access)


@require_POST
@project_view(LEAD)
def invitation_create(request, access):
    """A new invitation link, shown once in the members panel (on the members page without JavaScript)."""
    form, link = InvitationForm(request.POST), ""
    if form.is_valid():
        try:
            new = invitations.invitation_create(project=access.project, user=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            link = request.build_absolute_uri(reverse("invitation_accept", args=[access.project.id, new.token]))
            messages.success(request, f"Invitation as {new.invitation.get_role_display().lower()} made, valid until "
                                      f"{new.invitation.expires_at:%Y-%m-%d}. Copy the link now: it is shown once.")
            form = InvitationForm()
    return MEMBERS.render(request, access, MemberAddForm(), invite_form=form, new_link=link)


@require_POST
@project_view(LEAD)
def invitation_revoke(request, access, invitation_id):
    invitation = invitations.invitation_get(project=access.project, invitation_id=invitation_id)
    if invitations.invitation_revoke(invitation=invitation):
        messages.success(request, "Invitation withdrawn: its link no longer works.")
    else:
        messages.info(request, "That invitation was used or withdrawn already.")
    return MEMBERS.saved(request, access)


@public_view
def invitation_accept(request, project_id, token):
    """The invitee's page: a new account (username, e-mail, password), or, signed in, joining with their own."""
    invitation = invitations.invitation_for_token(project_id=project_id, token=token)
    problem = invitations.invitation_problem(invitation)
    form = None if problem or request.user.is_authenticated else InvitationAcceptForm(
        request.POST or None, initial={"email": invitation.email})
    if request.method == "POST" and not problem:
        try:
            if _joined(request, invitation, form):
                return redirect("project_detail", project_id=project_id)
        except ServiceError as exc:
            problem = "" if form is not None else str(exc)
            if form is not None:
                form.add_error(None, str(exc))
    return render(request, "annotation/projects/invitation_accept.html",
                  {"invitation": invitation, "problem": problem, "form": form}, status=410 if problem else 200)


def _joined(request, invitation, form) -> bool:
    """Whether the POST made the visitor a member: as the signed-in user (``join``), or with a new account."""
    if form is None:
        if not request.POST.get("join"):
            return False
        invitations.invitation_accept_existing_user(invitation=invitation, user=request.user)
    elif form.is_valid():
        user = invitations.invitation_accept_new_user(
            invitation=invitation, username=form.cleaned_data["username"], email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"])
        login(request, user)
    else:
        return False
    messages.success(request, f"Welcome to {invitation.project.name}: you are {invitation.get_role_display().lower()} "
                              "of this project.")
    return True


@project_view(LEAD)
def project_settings(request, access):
    project = access.project
    form = ProjectSettingsForm(request.POST or None, initial={f: getattr(project, f) for f in schema.PROJECT_FIELDS})
    saved = _submitted(request, form, partial(schema.project_update, project=project), done=lambda _: "Settings saved.")
    if saved and not request.htmx:
        return redirect("project_settings", project_id=project.id)
    return render_page(request, access, "annotation/projects/settings.html",
                       partial="annotation/projects/_settings_form.html", form=form)


@project_view(LEAD)
def labels(request, access):
    return LABELS.add(request, access, schema.label_create, done=lambda label: f"Label '{label.name}' added.")


@project_view(LEAD)
def label_edit(request, access, label_id):
    label = selectors.project_label_get(project=access.project, label_id=label_id)
    form = LabelForm(request.POST or None, initial=_label_initial(label))
    if _submitted(request, form, partial(schema.label_update, label=label, user=request.user),
                  done=lambda saved: f"Label '{saved.name}' saved."):
        return LABELS.saved(request, access)
    return _render_label_form(request, access, label, form)


@require_POST
@project_view(LEAD)
def label_delete(request, access, label_id):
    label = selectors.project_label_get(project=access.project, label_id=label_id)
    form = LabelDeleteForm(request.POST, label=label)
    try:
        if not form.is_valid():
            raise ServiceError("Choose a label of this project to merge into.")
        into = form.cleaned_data["merge_into"]
        if into:
            n = schema.label_merge(label=label, into=into, user=request.user)
            messages.success(request, f"'{label.name}' merged into '{into.name}'; {n} item(s) relabelled.")
        else:
            schema.label_delete(label=label)
            messages.success(request, f"Label '{label.name}' deleted.")
    except ServiceError as exc:
        messages.error(request, str(exc))
        # Refused while the label is still there (in use, or its merge target went): back to its form. Deleted by
        # someone else meanwhile, it has no form any more: the list, with the message.
        if label in selectors.project_labels(project=access.project):
            if not request.htmx:
                return redirect("label_edit", project_id=access.project.id, label_id=label.id)
            return _render_label_form(request, access, label, LabelForm(initial=_label_initial(label)))
    return LABELS.saved(request, access)


def _label_initial(label: Label) -> dict:
    return {"name": label.name, "description": label.description, "label_words": ", ".join(label.label_words),
            "hotkey": label.hotkey, "color": label.color, "order": label.order}


def _render_label_form(request, access, label, form):
    return render_page(request, access, "annotation/projects/labels_edit.html",
                       partial="annotation/projects/_label_form.html", label=label, form=form,
                       delete_form=LabelDeleteForm(label=label))


@project_view(LEAD)
def attributes(request, access):
    return DIMENSIONS.add(request, access, schema.attribute_create,
                          done=lambda dimension: f"Dimension '{dimension.name}' added.")


@project_view(LEAD)
def attribute_edit(request, access, dimension_id):
    dimension = selectors.project_dimension_get(project=access.project, dimension_id=dimension_id)
    form = AttributeForm(request.POST or None, initial={"name": dimension.name, "values": "\n".join(dimension.values)})
    if _submitted(request, form, partial(schema.attribute_update, dimension=dimension),
                  done=lambda saved: f"Dimension '{saved.name}' saved."):
        return DIMENSIONS.saved(request, access)
    return render_page(request, access, "annotation/projects/attributes_edit.html",
                       partial="annotation/projects/_attribute_form.html", dimension=dimension, form=form)


@require_POST
@project_view(LEAD)
def attribute_delete(request, access, dimension_id):
    dimension = selectors.project_dimension_get(project=access.project, dimension_id=dimension_id)
    schema.attribute_delete(dimension=dimension)
    messages.success(request, f"Dimension '{dimension.name}' deleted.")
    return DIMENSIONS.saved(request, access)
