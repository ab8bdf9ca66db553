"""Reads for the generation pages, scoped to one project."""
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from annotation.models import Item, Project, Status
from generation.config import JobConfig, JobConfigError
from generation.models import GenerationJob, JobEvent

PAGE = 200


def jobs_for_project(*, project: Project) -> QuerySet[GenerationJob]:
    return GenerationJob.objects.filter(project=project).select_related("created_by").order_by("-id")


def job_get(*, project: Project, job_id: int) -> GenerationJob:
    return get_object_or_404(GenerationJob, pk=job_id, project=project)


def job_settings(*, job: GenerationJob) -> list[tuple[str, str]]:
    """The job's settings as (setting, value) rows; a stored configuration that cannot be read says so instead."""
    try:
        return JobConfig.load(job.config).summary()
    except JobConfigError as exc:
        return [("Settings", f"not readable ({exc})")]


def job_items(*, job: GenerationJob, status: str | None = None, limit: int = PAGE) -> list[Item]:
    """Items the job created (newest first), optionally of one status."""
    qs = Item.objects.filter(project_id=job.project_id, generation_job_id=job.id)
    if status:
        qs = qs.filter(status=status)
    return list(qs.only("id", "text", "status", "proposed_labels", "llm_confidence", "filter_reason", "source")
                .order_by("-id")[:limit])


def job_filtered_items(*, job: GenerationJob, limit: int = PAGE) -> list[Item]:
    return job_items(job=job, status=Status.FILTERED, limit=limit)


def job_events(*, job: GenerationJob, kinds: tuple[str, ...] = (), limit: int = 50) -> list[JobEvent]:
    qs = JobEvent.objects.filter(job=job)
    if kinds:
        qs = qs.filter(kind__in=kinds)
    return list(qs.order_by("-id")[:limit])
