"""Reads for the generation pages, scoped to one project."""
from dataclasses import dataclass

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.models import Item, Project, Status
from generation.config import JobConfig, JobConfigError
from generation.models import GenerationJob, JobEvent

PAGE = 200


def jobs_for_project(*, project: Project) -> QuerySet[GenerationJob]:
    return GenerationJob.objects.filter(project=project).select_related("created_by").order_by("-id")


def job_get(*, project: Project, job_id: int) -> GenerationJob:
    return get_object_or_404(GenerationJob, pk=job_id, project=project)


@dataclass(frozen=True)
class JobPace:
    """How far a job is: samples done (stored, filtered or failed) of those requested, and its rate since it started
    (None before it started or before anything is done)."""

    done: int
    requested: int
    per_minute: float | None
    seconds_left: float | None

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.done / self.requested)) if self.requested else 0


def job_pace(*, job: GenerationJob) -> JobPace:
    done = job.produced + job.filtered + job.failed
    if job.started_at is None or not done:
        return JobPace(done=done, requested=job.requested, per_minute=None, seconds_left=None)
    elapsed = max(((job.finished_at or timezone.now()) - job.started_at).total_seconds(), 1.0)
    per_second = done / elapsed
    left = (job.requested - done) / per_second if job.is_active and job.requested > done else None
    return JobPace(done=done, requested=job.requested, per_minute=per_second * 60, seconds_left=left)


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
