"""The lead's dashboard: quality numbers as charts, a refresh button, and train-on-synthetic evaluation runs.

The page reads cached snapshots (annotation/dashboard/services.py) and asks for a refresh when they are stale; while a refresh
or an evaluation runs, the body polls itself with HTMX.
"""
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotation.dashboard import evaluation
from annotation.dashboard import services as dashboard
from annotation.dashboard.charts import dashboard_charts
from annotation.dashboard.forms import GoldUploadForm
from annotation.permissions import LEAD, project_view
from synthstudio.lib.pages import render_page


@project_view(LEAD)
def dashboard_page(request, access):
    page = dashboard.dashboard_page(project=access.project)
    refreshing = page.pending or (page.stale and dashboard.dashboard_refresh_request(project=access.project))
    return _render(request, access, page, refreshing=refreshing, form=GoldUploadForm())


@require_POST
@project_view(LEAD)
def dashboard_refresh(request, access):
    if dashboard.dashboard_refresh_request(project=access.project, force=True):
        messages.success(request, "The dashboard is being recomputed; it updates itself when done.")
    else:
        messages.info(request, "A recomputation is already running.")
    if not request.htmx:
        return redirect("dashboard", project_id=access.project.id)
    return _render(request, access, dashboard.dashboard_page(project=access.project), refreshing=True)


@require_POST
@project_view(LEAD)
def evaluation_create(request, access):
    form = GoldUploadForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            evaluation.evaluation_create(project=access.project, user=request.user, file_name=upload.name,
                                         data=upload.read())
        except evaluation.GoldError as exc:
            form.add_error("file", str(exc))
        else:
            messages.success(request, f"Evaluation on {upload.name} queued.")
            url = reverse("dashboard", args=[access.project.id]) + "#evaluation"
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    if request.htmx:  # htmx swaps only successful responses: the form comes back with its errors
        return render_page(request, access, "annotation/dashboard/_dashboard_gold_form.html", form=form)
    page = dashboard.dashboard_page(project=access.project)
    return _render(request, access, page, refreshing=page.pending, form=form, status=400)


def _render(request, access, page, *, refreshing: bool, form=None, status: int = 200):
    running = any(run.state in ("queued", "running") for run in page.evaluations)
    return render_page(request, access, "annotation/dashboard/dashboard.html",
                       partial="annotation/dashboard/_dashboard_body.html", status=status, page=page,
                       charts=dashboard_charts(page), refreshing=refreshing, polling=refreshing or running, form=form)
