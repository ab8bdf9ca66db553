"""Celery tasks of the annotation app: thin wrappers that load ids and call one service."""
from celery import shared_task
from django.db import OperationalError

from annotation.models import Project
from annotation.selection import selection_round_due, selection_run_round


@shared_task(name="annotation.selection_round", autoretry_for=(OperationalError,), retry_backoff=5, max_retries=3)
def selection_round(project_id: int, force: bool = False) -> int | None:
    """Retrain, rescore and re-route one project; the id of the round run, or None if none was due or one is running.

    Safe to run twice: the round is claimed under a per-project lock, and unless forced (a lead's "score now") the
    task re-checks that enough new reviews exist, so duplicates queued by a burst of reviews do nothing. Retried only
    on database errors such as a lock timeout; a failed round is recorded on its ScoringRound row.
    """
    project = Project.objects.filter(pk=project_id, archived_at__isnull=True).first()
    if project is None or not (force or selection_round_due(project=project)):
        return None
    scoring_round = selection_run_round(project=project, trigger="manual" if force else "reviews")
    return scoring_round.pk if scoring_round else None
