"""Reads for the import pages: a project's recent import jobs and one of them."""
from django.shortcuts import get_object_or_404

from annotation.models import ImportJob, Project

RECENT_JOBS = 10


def import_jobs_recent(*, project: Project, limit: int = RECENT_JOBS) -> list[ImportJob]:
    return list(ImportJob.objects.filter(project=project).select_related("created_by")[:limit])


def import_job_get(*, project: Project, job_id: int) -> ImportJob:
    """The import job, or 404 when it belongs to another project."""
    return get_object_or_404(ImportJob, pk=job_id, project=project)
