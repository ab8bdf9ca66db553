"""Celery tasks for the dashboard: thin wrappers that take ids and call one function (annotation/dashboard/services.py,
annotation/dashboard/evaluation.py)."""
from celery import shared_task

from annotation.dashboard import evaluation
from annotation.dashboard import services as dashboard


@shared_task(name="annotation.dashboard_refresh", acks_late=True, reject_on_worker_lost=True)
def dashboard_refresh(project_id: int) -> None:
    """Recompute the project's dashboard snapshots. Read-only apart from overwriting the snapshots, so a second
    delivery just computes them again."""
    dashboard.dashboard_compute(project_id=project_id)


@shared_task(name="annotation.evaluation_run")
def evaluation_run(run_id: int) -> str:
    """Train and score one evaluation run. Claimed with a conditional UPDATE, so a duplicate delivery does nothing;
    not retried: a failure is recorded on the run for the lead to read."""
    return evaluation.evaluation_run(run_id=run_id)
