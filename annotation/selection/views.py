"""The lead's routing page: policy, recent scoring rounds, accuracy estimates from audits, and the pause decision."""
from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotation import selection
from annotation.errors import ServiceError
from annotation.permissions import LEAD, project_view
from annotation.selection.forms import AutoAcceptDecisionForm
from synthstudio.lib.pages import render_page


@project_view(LEAD)
def routing_page(request, access):
    return _render(request, access)


@require_POST
@project_view(LEAD)
def routing_decide(request, access):
    form = AutoAcceptDecisionForm(request.POST)
    if form.is_valid():
        resume = form.cleaned_data["decision"] == "resume"
        try:
            selection.auto_accept_decide(project=access.project, user=request.user, resume=resume)
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Auto-accept resumed." if resume else "Auto-accept stays paused.")
    else:
        messages.error(request, "Choose to resume or to keep auto-accept paused.")
    return _done(request, access)


@require_POST
@project_view(LEAD)
def routing_score(request, access):
    if selection.selection_request_round(access.project.id, force=True):
        messages.success(request, "A scoring round is queued; this page shows it when it starts.")
    else:
        messages.info(request, "A scoring round is already queued; this page shows it when it starts.")
    return _done(request, access)


def _done(request, access):
    if not request.htmx:
        return redirect("routing", project_id=access.project.id)
    return _render(request, access)


def _render(request, access):
    access.project.refresh_from_db()
    return render_page(request, access, "annotation/selection/routing.html",
                       partial="annotation/selection/_routing_panel.html",
                       overview=selection.routing_overview(project=access.project))
