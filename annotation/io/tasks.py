"""Celery tasks for data in and out: thin wrappers that take ids and call one service (annotation/io/importing.py)."""
from celery import shared_task

from annotation.io import importing


@shared_task(name="annotation.import_items")
def import_items(job_id: int) -> dict:
    """Run one import job, queued by ``importing.import_job_create``. Claimed with a conditional UPDATE, so a duplicate
    delivery does nothing; not retried, because a failed import has already told the user why (ImportJob.errors) and
    deleted the upload; a run whose worker dies is marked failed by ``importing.import_jobs_reap``."""
    job = importing.import_job_run(job_id=job_id)
    return {"job": job_id, "state": job.state if job else "already claimed"}
