"""Celery tasks of the annotation app: thin wrappers that load ids and call one service."""
from celery import shared_task
from django.db import OperationalError

from annotation.models import Project
from annotation.selection import chunks, selection_round_due, selection_run_round


@shared_task(name="annotation.selection_round", autoretry_for=(OperationalError,), retry_backoff=5, max_retries=3)
def selection_round(project_id: int, force: bool = False) -> int | None:
    """Retrain, rescore and re-route one project; the id of the round run, or None if none was due or one is running.

    Safe to run twice: the round is claimed under a per-project lock, and unless forced (a lead's "score now") the
    task re-checks that enough new reviews exist, so duplicates queued by a burst of reviews do nothing. Retried only
    on database errors such as a lock timeout; a failed round is recorded on its ScoringRound row. A large project's
    round continues in ``selection_score_chunk`` tasks; a request made while such a round runs sends again the chunks
    whose worker was lost.
    """
    project = Project.objects.filter(pk=project_id, archived_at__isnull=True).first()
    if project is None:
        return None
    chunks.round_resume(project_id=project_id)
    if not (force or selection_round_due(project=project)):
        return None
    scoring_round = selection_run_round(project=project, trigger="manual" if force else "reviews", fan_out=True)
    return scoring_round.pk if scoring_round else None


@shared_task(name="annotation.selection_score_chunk", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(Exception,), retry_backoff=2, max_retries=3)
def selection_score_chunk(round_id: int, index: int) -> int | None:
    """Score one chunk of a chunked round (``annotation/selection/chunks.py``). Acknowledged once done and handed to
    another worker if its own is lost; retried alone if it raises (a second run computes the same scores and writes
    only what the first did not). The last chunk queues ``selection_route``."""
    try:
        return chunks.chunk_run(round_id=round_id, index=index)
    except Exception as exc:
        if selection_score_chunk.request.retries >= selection_score_chunk.max_retries:
            chunks.round_abandon(round_id=round_id, exc=exc)
        raise


@shared_task(name="annotation.selection_route", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError,), retry_backoff=5, max_retries=3)
def selection_route(round_id: int) -> int | None:
    """Route a chunked round's project on its scores and finish the round."""
    scoring_round = chunks.round_route(round_id=round_id)
    return scoring_round.pk if scoring_round else None
