"""Lead pages for data in and out: upload an import and watch it, download an export.

An upload is saved and handed to a Celery task (``annotation.io.tasks.import_items``) whatever its size, so there is one
code path; the job page polls its status with HTMX until the job ends. Exports stream straight from the database.
"""
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django_htmx.http import HttpResponseClientRedirect

from annotation.io import exporting, importing, selectors
from annotation.io.forms import ExportForm, ImportForm
from annotation.permissions import LEAD, project_view
from synthstudio.lib.pages import render_page


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
        url = reverse("import_detail", args=[access.project.id, job.id])
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    importing.import_jobs_reap(project=access.project)
    jobs = selectors.import_jobs_recent(project=access.project)
    return render_page(request, access, "annotation/io/import.html", partial="annotation/io/_import_jobs.html",
                       status=400 if form.errors else 200, form=form, jobs=jobs,
                       polling=any(job.state in selectors.IMPORT_ACTIVE for job in jobs))


@project_view(LEAD)
def import_detail(request, access, job_id):
    importing.import_jobs_reap(project=access.project)
    return render_page(request, access, "annotation/io/import_detail.html", partial="annotation/io/_import_status.html",
                       job=selectors.import_job_get(project=access.project, job_id=job_id))


@project_view(LEAD)
def export_page(request, access):
    form = ExportForm(request.GET or None, project=access.project)
    summary = None
    if not form.is_bound or form.is_valid():
        filters = _filters(form) if form.is_bound else exporting.ExportFilters(verified_only=True)
        summary = selectors.export_summary(project=access.project, filters=filters)
    return render_page(request, access, "annotation/io/export.html", partial="annotation/io/_export_count.html",
                       form=form, summary=summary)


@project_view(LEAD)
def export_download(request, access):
    form = ExportForm(request.GET, project=access.project)
    if not form.is_valid():
        return render_page(request, access, "annotation/io/export.html", status=400, form=form, summary=None)
    fmt = form.cleaned_data["format"]
    stream = exporting.export_stream(project=access.project, fmt=fmt, filters=_filters(form),
                                     provenance=form.cleaned_data["provenance"])
    spec = exporting.EXPORT_FORMATS[fmt]
    response = StreamingHttpResponse(stream, content_type=spec.content_type)
    name = f"{slugify(access.project.name) or 'project'}-{timezone.now():%Y%m%d-%H%M}.{spec.extension}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@project_view(LEAD)
def audit_log_download(request, access):
    """Every Review row of the project (the audit log), streamed as CSV or JSONL."""
    spec = exporting.EXPORT_FORMATS.get(request.GET.get("format", "csv"))
    if spec is None:
        return HttpResponseBadRequest(f"format must be one of: {', '.join(exporting.EXPORT_FORMATS)}")
    response = StreamingHttpResponse(exporting.audit_log_stream(project=access.project, fmt=spec.name),
                                     content_type=spec.content_type)
    name = f"{slugify(access.project.name) or 'project'}-reviews-{timezone.now():%Y%m%d-%H%M}.{spec.extension}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _filters(form) -> exporting.ExportFilters:
    return form.export_filters()
