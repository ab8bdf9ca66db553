"""Pages that set a project up: the project list, a new project, its members, settings and review policy, labels and
attribute dimensions. Views stay thin: access -> form -> service -> render or redirect.

Each lead page has one panel that HTMX swaps (``_..._panel.html`` / ``_..._form.html``); without JavaScript every form
posts and redirects. The writes are in ``services.py`` (projects, members) and ``schema.py`` (labels, dimensions).
"""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.errors import ServiceError
from annotation.models import Label
from annotation.permissions import LEAD, MEMBER, project_view, user_view
from annotation.projects import schema, selectors, services
from annotation.projects.forms import (
    AttributeForm,
    LabelDeleteForm,
    LabelForm,
    MemberAddForm,
    MemberRoleForm,
    ProjectCreateForm,
    ProjectSettingsForm,
)
from synthstudio.lib.pages import render_page


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
    counts = selectors.project_status_counts(project=access.project)
    return render_page(request, access, "annotation/projects/project_detail.html", counts=counts)


@project_view(LEAD)
def members(request, access):
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.membership_add(project=access.project, **form.cleaned_data)
        except ServiceError as exc:
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
    membership = selectors.project_membership_get(project=access.project, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    try:
        if request.POST.get("remove"):
            services.membership_remove(membership=membership)
            messages.success(request, f"{membership.user.username} was removed from the project.")
        elif form.is_valid():
            services.membership_set_role(membership=membership, role=form.cleaned_data["role"])
            messages.success(request, f"{membership.user.username} is now {membership.get_role_display().lower()}.")
    except ServiceError as exc:
        messages.error(request, str(exc))
    if not request.htmx:
        return redirect("members", project_id=access.project.id)
    return _render_members(request, access, MemberAddForm())


def _render_members(request, access, form):
    return render_page(request, access, "annotation/projects/members.html",
                       partial="annotation/projects/_members_panel.html", form=form,
                       members=selectors.project_members(project=access.project))


@project_view(LEAD)
def project_settings(request, access):
    project = access.project
    form = ProjectSettingsForm(request.POST or None, initial={f: getattr(project, f) for f in schema.PROJECT_FIELDS})
    if request.method == "POST" and form.is_valid():
        try:
            schema.project_update(project=project, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Settings saved.")
            if not request.htmx:
                return redirect("project_settings", project_id=project.id)
    return render_page(request, access, "annotation/projects/settings.html",
                       partial="annotation/projects/_settings_form.html", form=form)


@project_view(LEAD)
def labels(request, access):
    form = LabelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            label = schema.label_create(project=access.project, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Label '{label.name}' added.")
            if not request.htmx:
                return redirect("labels", project_id=access.project.id)
            form = LabelForm()
    return _render_labels(request, access, form)


@project_view(LEAD)
def label_edit(request, access, label_id):
    label = selectors.project_label_get(project=access.project, label_id=label_id)
    form = LabelForm(request.POST or None, initial=_label_initial(label))
    if request.method == "POST" and form.is_valid():
        try:
            schema.label_update(label=label, user=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Label '{label.name}' saved.")
            if not request.htmx:
                return redirect("labels", project_id=access.project.id)
            return _render_labels(request, access, LabelForm())
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
        if not request.htmx:
            return redirect("label_edit", project_id=access.project.id, label_id=label.id)
        return _render_label_form(request, access, label, LabelForm(initial=_label_initial(label)))
    if not request.htmx:
        return redirect("labels", project_id=access.project.id)
    return _render_labels(request, access, LabelForm())


def _label_initial(label: Label) -> dict:
    return {"name": label.name, "description": label.description, "label_words": ", ".join(label.label_words),
            "hotkey": label.hotkey, "color": label.color, "order": label.order}


def _render_labels(request, access, form):
    return render_page(request, access, "annotation/projects/labels.html",
                       partial="annotation/projects/_labels_panel.html", form=form,
                       labels=selectors.project_labels(project=access.project))


def _render_label_form(request, access, label, form):
    return render_page(request, access, "annotation/projects/labels_edit.html",
                       partial="annotation/projects/_label_form.html", label=label, form=form,
                       delete_form=LabelDeleteForm(label=label))


@project_view(LEAD)
def attributes(request, access):
    form = AttributeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            dimension = schema.attribute_create(project=access.project, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Dimension '{dimension.name}' added.")
            if not request.htmx:
                return redirect("attributes", project_id=access.project.id)
            form = AttributeForm()
    return _render_attributes(request, access, form)


@project_view(LEAD)
def attribute_edit(request, access, dimension_id):
    dimension = selectors.project_dimension_get(project=access.project, dimension_id=dimension_id)
    form = AttributeForm(request.POST or None, initial={"name": dimension.name, "values": "\n".join(dimension.values)})
    if request.method == "POST" and form.is_valid():
        try:
            schema.attribute_update(dimension=dimension, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Dimension '{dimension.name}' saved.")
            if not request.htmx:
                return redirect("attributes", project_id=access.project.id)
            return _render_attributes(request, access, AttributeForm())
    return render_page(request, access, "annotation/projects/attributes_edit.html",
                       partial="annotation/projects/_attribute_form.html", dimension=dimension, form=form)


@require_POST
@project_view(LEAD)
def attribute_delete(request, access, dimension_id):
    dimension = selectors.project_dimension_get(project=access.project, dimension_id=dimension_id)
    schema.attribute_delete(dimension=dimension)
    messages.success(request, f"Dimension '{dimension.name}' deleted.")
    if not request.htmx:
        return redirect("attributes", project_id=access.project.id)
    return _render_attributes(request, access, AttributeForm())


def _render_attributes(request, access, form):
    return render_page(request, access, "annotation/projects/attributes.html",
                       partial="annotation/projects/_attributes_panel.html", form=form,
                       dimensions=selectors.project_dimensions(project=access.project))
