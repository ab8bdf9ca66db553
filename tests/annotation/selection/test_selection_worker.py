"""A scoring round end to end through the broker and a real Celery worker process."""
from annotation import selection
from annotation.items.services import item_transition
from annotation.models import Item, Project, ReviewAction, RoutingMode, ScoringRound, Status
from tests.support.factories import make_calibrated, make_pool
from tests.support.runtime import wait_for


def wait_for_round(project):
    finished = ScoringRound.objects.filter(project=project).exclude(state=ScoringRound.State.RUNNING)
    return wait_for(finished.first, what="a scoring round to finish", interval=0.5)


def test_reviews_trigger_a_round_that_a_worker_runs(celery_worker_process, project, annotator):
    make_pool(project)
    make_calibrated(project, routing_mode=RoutingMode.BUDGET)
    Project.objects.filter(pk=project.pk).update(retrain_every=2, review_budget=0.1, audit_rate=0.0)
    for item in Item.objects.filter(project=project).exclude(proposed_labels=[])[:2]:
        item_transition(item=item, to=Status.NEEDS_REVIEW, action=ReviewAction.ROUTE)
        item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=annotator,
                        final_labels=[item.extra["gold"]])
    assert selection.selection_maybe_schedule(project.pk) is True  # autocommit: sent at once

    scoring_round = wait_for_round(project)
    assert scoring_round.state == ScoringRound.State.DONE, scoring_round.error
    assert scoring_round.human_labels == 22 and scoring_round.metrics["trigger"] == "reviews"
    assert Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).count() > 40
    assert not Item.objects.filter(project=project, status=Status.PROPOSED).exists()
    assert selection.selection_round_due(project=project) is False
