"""Celery entry points for generation; thin wrappers over ``generation.services`` and ``generation.connections``.

``job_run`` is safe to run twice: the claim is a conditional UPDATE, and every batch is stored at most once (see the
services module), so late acknowledgement with ``reject_on_worker_lost`` can hand a job whose worker died to another
worker, which resumes at the first batch not yet stored. Only database outages are retried here; provider errors
(429, 5xx, timeouts) are retried per request inside the provider and counted, never by re-running the task.
"""
from celery import shared_task
from celery.contrib.django.task import DjangoTask
from django.db import InterfaceError, OperationalError

from generation import connections, services


@shared_task(
    base=DjangoTask,
    bind=True,
    name="generation.job_run",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_jitter=True,
    max_retries=5,
)
def job_run(self, job_id: int) -> dict | None:
    job = services.job_run(job_id=job_id, token=self.request.id or f"job-{job_id}")
    if job is None:
        return None
    return {"job": job.id, "status": job.status, "produced": job.produced, "filtered": job.filtered,
            "failed": job.failed}


@shared_task(base=DjangoTask, name="generation.endpoint_probe", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=5, retry_jitter=True, max_retries=3)
def endpoint_probe(connection_id: int | None) -> dict | None:
    """Probe a connection's endpoint (None: this worker's default) and store the profile. Safe to run twice: a probe
    is claimed, and a second run just probes again."""
    probe = connections.connection_probe_run(connection_id=connection_id)
    return probe.profile if probe else None
