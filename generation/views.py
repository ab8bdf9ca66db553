"""Pages for generation and labelling jobs (leads only). Thin: access -> form -> service -> render or redirect."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.errors import ServiceError
from annotation.permissions import LEAD, project_view
from annotation.projects.selectors import project_label_names
from generation import selectors, services
from generation.forms import JobStartForm


@project_view(LEAD)
def job_list(request, access):
    jobs = selectors.jobs_for_project(project=access.project)[:100]
    return render(request, "generation/job_list.html", {"access": access, "project": access.project, "jobs": jobs})


@project_view(LEAD)
def job_start(request, access):
    form = JobStartForm(request.POST or None, label_names=project_label_names(project=access.project))
    if request.method == "POST" and form.is_valid():
        try:
            job = services.job_create(project=access.project, user=request.user, **form.job_kwargs())
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Job #{job.id} queued: {job.requested} requested.")
            return redirect("generation_job", project_id=access.project.id, job_id=job.id)
    return render(request, "generation/job_start.html", {"access": access, "project": access.project, "form": form})


@require_POST
@project_view(LEAD)
def job_preview(request, access):
    """The exact messages the job's first request would send; a fragment for htmx, else the start page with it."""
    form = JobStartForm(request.POST, label_names=project_label_names(project=access.project))
    preview, error = None, ""
    if form.is_valid():
        try:
            preview = services.job_preview(project=access.project, **form.job_kwargs())
        except ServiceError as exc:
            error = str(exc)
    context = {"access": access, "project": access.project, "form": form, "preview": preview,
               "preview_error": error}
    template = "generation/_preview.html" if request.htmx else "generation/job_start.html"
    return render(request, template, context)


@project_view(LEAD)
def job_detail(request, access, job_id):
    job = selectors.job_get(project=access.project, job_id=job_id)
    context = {"access": access, "project": access.project, "job": job}
    if request.htmx:
        return render(request, "generation/_job_progress.html", context)
    context["items"] = selectors.job_items(job=job, limit=50)
    context["events"] = selectors.job_events(job=job, limit=30)
    return render(request, "generation/job_detail.html", context)


@require_POST
@project_view(LEAD)
def job_cancel(request, access, job_id):
    job = services.job_cancel(job=selectors.job_get(project=access.project, job_id=job_id), user=request.user)
    messages.info(request, f"Job #{job.id}: {job.get_status_display().lower()}"
                           f"{' (stops after the current batch)' if job.is_active else ''}.")
    if request.htmx:
        return render(request, "generation/_job_progress.html", {"access": access, "project": access.project,
                                                                  "job": job})
    return redirect("generation_job", project_id=access.project.id, job_id=job.id)


@project_view(LEAD)
def job_inspect(request, access, job_id):
    """Filtered items with their reasons and the raw malformed outputs, for the lead to judge the filters."""
    job = selectors.job_get(project=access.project, job_id=job_id)
    context = {"access": access, "project": access.project, "job": job,
               "filtered": selectors.job_filtered_items(job=job),
               "malformed": selectors.job_events(job=job, kinds=("malformed",), limit=100),
               "errors": selectors.job_events(job=job, kinds=("error",), limit=100)}
    return render(request, "generation/job_inspect.html", context)
