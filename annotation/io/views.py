"""Lead pages for data in and out: upload an import and watch it, download an export.

An upload is saved and handed to a Celery task (``annotation.io.tasks.import_items``) whatever its size, so there is one
code path; the job page polls its status with HTMX until the job ends. Exports stream straight from the database.
"""
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django_htmx.http import HttpResponseClientRedirect

from annotation.io import exporting, importing
from annotation.io import tasks as io_tasks
from annotation.io.forms import ExportForm, ImportForm
from annotation.models import ImportJob
from annotation.permissions import LEAD, project_view

RECENT_JOBS = 10


@project_view(LEAD)
def import_page(request, access):
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        options = importing.ImportOptions(
            format=importing.format_for(data["file"].name), text_column=data["text_column"].strip(),
            label_column=data["label_column"].strip(), llm_label_column=data["llm_label_column"].strip(),
            llm_confidence_column=data["llm_confidence_column"].strip(), duplicates=data["duplicates"],
        )
        job = importing.import_job_create(project=access.project, user=request.user, file_name=data["file"].name,
                                          options=options, upload=data["file"])
        io_tasks.import_items.delay_on_commit(job.id)
        url = reverse("import_detail", args=[access.project.id, job.id])
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    jobs = ImportJob.objects.filter(project=access.project).select_related("created_by")[:RECENT_JOBS]
    context = {"access": access, "project": access.project, "form": form, "jobs": jobs}
    template = "annotation/io/_import_jobs.html" if request.htmx else "annotation/io/import.html"
    return render(request, template, context, status=400 if form.errors else 200)


@project_view(LEAD)
def import_detail(request, access, job_id):
    job = get_object_or_404(ImportJob, pk=job_id, project=access.project)
    template = "annotation/io/_import_status.html" if request.htmx else "annotation/io/import_detail.html"
    return render(request, template, {"access": access, "project": access.project, "job": job})


@project_view(LEAD)
def export_page(request, access):
    form = ExportForm(request.GET or None, project=access.project)
    count = None
    if not form.is_bound or form.is_valid():
        filters = _filters(form) if form.is_bound else exporting.ExportFilters()
        count = exporting.export_count(project=access.project, filters=filters)
    context = {"access": access, "project": access.project, "form": form, "count": count}
    template = "annotation/io/_export_count.html" if request.htmx else "annotation/io/export.html"
    return render(request, template, context)


@project_view(LEAD)
def export_download(request, access):
    form = ExportForm(request.GET, project=access.project)
    if not form.is_valid():
        context = {"access": access, "project": access.project, "form": form, "count": None}
        return render(request, "annotation/io/export.html", context, status=400)
    fmt = form.cleaned_data["format"]
    stream = exporting.export_stream(project=access.project, fmt=fmt, filters=_filters(form),
                                     provenance=form.cleaned_data["provenance"])
    response = StreamingHttpResponse(stream, content_type=exporting.CONTENT_TYPES[fmt])
    name = f"{slugify(access.project.name) or 'project'}-{timezone.now():%Y%m%d-%H%M}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@project_view(LEAD)
def audit_log_download(request, access):
    """Every Review row of the project (the audit log), streamed as CSV or JSONL."""
    fmt = request.GET.get("format", "csv")
    if fmt not in exporting.CONTENT_TYPES:
        return HttpResponseBadRequest("format must be csv or jsonl")
    response = StreamingHttpResponse(exporting.audit_log_stream(project=access.project, fmt=fmt),
                                     content_type=exporting.CONTENT_TYPES[fmt])
    name = f"{slugify(access.project.name) or 'project'}-reviews-{timezone.now():%Y%m%d-%H%M}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _filters(form) -> exporting.ExportFilters:
    data = form.cleaned_data
    return exporting.ExportFilters(statuses=tuple(data["status"]), source=data["source"], label=data["label"],
                                   created_from=data["created_from"], created_to=data["created_to"])
