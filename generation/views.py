"""Pages for generation and labelling jobs and the project's LLM connections (leads only). Thin: access -> form ->
service -> render or redirect."""
from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotation.errors import ServiceError
from annotation.permissions import LEAD, project_view
from annotation.projects.selectors import project_label_names
from generation import connections, selectors, services
from generation.forms import ConnectionForm, JobStartForm
from synthstudio.lib.pages import render_page


@project_view(LEAD)
def job_list(request, access):
    jobs = selectors.jobs_for_project(project=access.project)[:100]
    return render_page(request, access, "generation/job_list.html", jobs=jobs)


@project_view(LEAD)
def job_start(request, access):
    form = JobStartForm(request.POST or None, project=access.project,
                        label_names=project_label_names(project=access.project))
    if request.method == "POST" and form.is_valid():
        try:
            job = services.job_create(project=access.project, user=request.user, **form.job_kwargs())
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Job #{job.id} queued: {job.requested} requested.")
            return redirect("generation_job", project_id=access.project.id, job_id=job.id)
    return render_page(request, access, "generation/job_start.html", form=form)


@require_POST
@project_view(LEAD)
def job_preview(request, access):
    """The exact messages the job's first request would send; a fragment for htmx, else the start page with it."""
    form = JobStartForm(request.POST, project=access.project, label_names=project_label_names(project=access.project))
    preview, error = None, ""
    if form.is_valid():
        try:
            preview = services.job_preview(project=access.project, **form.job_kwargs())
        except ServiceError as exc:
            error = str(exc)
    return render_page(request, access, "generation/job_start.html", partial="generation/_preview.html", form=form,
                       preview=preview, preview_error=error)


@project_view(LEAD)
def job_detail(request, access, job_id):
    """The job page; htmx polls its live part (progress, latest items, log) until the job ends."""
    job = selectors.job_get(project=access.project, job_id=job_id)
    return _job_page(request, access, job)


def _job_page(request, access, job):
    return render_page(request, access, "generation/job_detail.html", partial="generation/_job_live.html", job=job,
                       settings=None if request.htmx else selectors.job_settings(job=job),
                       pace=selectors.job_pace(job=job), items=selectors.job_items(job=job, limit=50),
                       events=selectors.job_events(job=job, limit=30))


@require_POST
@project_view(LEAD)
def job_cancel(request, access, job_id):
    job = services.job_cancel(job=selectors.job_get(project=access.project, job_id=job_id), user=request.user)
    messages.info(request, f"Job #{job.id}: {job.get_status_display().lower()}"
                           f"{' (stops after the current batch)' if job.is_active else ''}.")
    if request.htmx:
        return _job_page(request, access, job)
    return redirect("generation_job", project_id=access.project.id, job_id=job.id)


@project_view(LEAD)
def job_inspect(request, access, job_id):
    """Filtered items with their reasons and the raw malformed outputs, for the lead to judge the filters."""
    job = selectors.job_get(project=access.project, job_id=job_id)
    return render_page(request, access, "generation/job_inspect.html", job=job,
                       filtered=selectors.job_filtered_items(job=job),
                       malformed=selectors.job_events(job=job, kinds=("malformed",), limit=100),
                       errors=selectors.job_events(job=job, kinds=("error",), limit=100))


@project_view(LEAD)
def connection_list(request, access):
    """The deployment's default and the project's connections with what their probes found; POST adds one."""
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and _saved(request, access, form):
        return redirect("generation_connections", project_id=access.project.id)
    return _connections_page(request, access, form)


@project_view(LEAD)
def connection_edit(request, access, connection_id):
    connection = connections.connection_get(project=access.project, connection_id=connection_id)
    initial = {"name": connection.name, "base_url": connection.base_url, "model": connection.model,
               "key_variable": connection.key_variable, "is_default": connection.is_default}
    form = ConnectionForm(request.POST or None, initial=initial)
    if request.method == "POST" and _saved(request, access, form, connection=connection):
        return redirect("generation_connections", project_id=access.project.id)
    return render_page(request, access, "generation/connection_edit.html", form=form, connection=connection)


@require_POST
@project_view(LEAD)
def connection_delete(request, access, connection_id):
    connection = connections.connection_get(project=access.project, connection_id=connection_id)
    connections.connection_delete(connection=connection)
    messages.info(request, f"Connection {connection.name} deleted; jobs that used it keep what they ran against.")
    return redirect("generation_connections", project_id=access.project.id)


@require_POST
@project_view(LEAD)
def connection_test(request, access):
    """Queue a probe of the chosen connection ("default" or a connection id); the panel polls until it is done."""
    chosen = request.POST.get("connection", "default")
    connection = None if not chosen.isdigit() else connections.connection_get(project=access.project,
                                                                              connection_id=int(chosen))
    if connections.probe_request(endpoint=connections.endpoint_of(connection)):
        messages.success(request, "Testing the connection: a few tiny requests; the results appear here.")
    else:
        messages.info(request, "A test of this connection is already under way.")
    if not request.htmx:
        return redirect("generation_connections", project_id=access.project.id)
    return _connections_page(request, access, ConnectionForm())


def _saved(request, access, form, connection=None) -> bool:
    if not form.is_valid():
        return False
    try:
        saved = connections.connection_save(project=access.project, user=request.user, connection=connection,
                                            **form.save_kwargs())
    except connections.ConnectionProblem as exc:
        for field, message in exc.problems:
            form.add_error(field, message)
        return False
    messages.success(request, f"Connection {saved.name} saved; testing it now.")
    return True


def _connections_page(request, access, form):
    rows = connections.connection_views(project=access.project)
    return render_page(request, access, "generation/connections.html", partial="generation/_connections_panel.html",
                       form=form, rows=rows, polling=any(row.probe is not None and row.probe.pending for row in rows))
