"""The parts meet: generation hands new items to routing, reviews trigger retraining, routing asks for overlap."""
import pytest

from annotation.models import Item, ScoringRound, Status
from annotation.queue import services as queue
from annotation.selection import selection_run_round
from generation.models import JobMode
from synthstudio.celery import app as celery_app
from tests.support.callbacks import queued_tasks
from tests.support.factories import make_pool
from tests.support.jobs import seed, start


@pytest.fixture
def eager():
    """Run queued tasks in this process when their transaction commits (the real worker path is tested elsewhere)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def test_a_finished_generation_job_routes_its_items(project, lead, eager, django_capture_on_commit_callbacks):
    seed(project)
    with django_capture_on_commit_callbacks(execute=True):
        job = start(project, lead, provider="offline", mode=JobMode.LABEL_CONDITIONED, count=12,
                    samples_per_request=2, requests_per_batch=3, filters={"leakage_words": 0})
    produced = Item.objects.filter(generation_job_id=job.id).exclude(status=Status.FILTERED)
    assert job.produced == produced.count() > 0
    assert ScoringRound.objects.filter(project=project, metrics__trigger="manual").exists()
    assert not produced.filter(status=Status.PROPOSED).exists()


def test_the_review_that_reaches_retrain_every_starts_a_round(project, annotator, eager,
                                                                django_capture_on_commit_callbacks):
    make_pool(project)
    selection_run_round(project=project, trigger="manual")
    project.retrain_every = 2
    project.save(update_fields=["retrain_every"])
    rounds_before = ScoringRound.objects.count()
    for expected_rounds in (rounds_before, rounds_before + 1):
        item = queue.queue_claim(project=project, user=annotator)
        with django_capture_on_commit_callbacks(execute=True):
            queue.item_review(project=project, item_id=item.pk, user=annotator, action="accept",
                              expected_version=item.version, labels=item.proposed_labels or ["positive"])
        assert ScoringRound.objects.count() == expected_rounds
    assert ScoringRound.objects.order_by("-id").first().metrics["trigger"] == "reviews"


def test_routing_asks_overlap_items_for_k_reviews(project):
    project.overlap_rate, project.overlap_k = 1.0, 3
    project.save(update_fields=["overlap_rate", "overlap_k"])
    make_pool(project)
    selection_run_round(project=project, trigger="manual")
    in_review = Item.objects.filter(project=project, status=Status.NEEDS_REVIEW)
    assert in_review.exists()
    assert set(in_review.values_list("reviews_required", flat=True)) == {3}
    assert set(Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED)
               .values_list("reviews_required", flat=True)) <= {1}


def test_a_burst_of_reviews_queues_one_round_until_it_starts(project, annotator, django_capture_on_commit_callbacks):
    make_pool(project)
    selection_run_round(project=project, trigger="manual")
    project.retrain_every = 1
    project.save(update_fields=["retrain_every"])
    queued = []
    for _ in range(3):
        item = queue.queue_claim(project=project, user=annotator)
        with django_capture_on_commit_callbacks() as callbacks:
            queue.item_review(project=project, item_id=item.pk, user=annotator, action="accept",
                              expected_version=item.version, labels=item.proposed_labels or ["positive"])
        queued.append(len(queued_tasks(callbacks)))
    assert queued == [1, 0, 0]
    # Once the round starts, the next due review may queue again.
    selection_run_round(project=project, trigger="reviews")
    item = queue.queue_claim(project=project, user=annotator)
    with django_capture_on_commit_callbacks() as callbacks:
        queue.item_review(project=project, item_id=item.pk, user=annotator, action="accept",
                          expected_version=item.version, labels=item.proposed_labels or ["positive"])
    assert len(queued_tasks(callbacks)) == 1


def test_jobs_ending_together_queue_one_routing_round(project, lead, django_capture_on_commit_callbacks):
    seed(project)
    queued = []
    for _ in range(2):
        with django_capture_on_commit_callbacks() as callbacks:
            start(project, lead, provider="offline", mode=JobMode.LABEL_CONDITIONED, count=4, samples_per_request=2,
                  requests_per_batch=2, filters={"leakage_words": 0})
        queued.append(len(queued_tasks(callbacks)))
    assert queued == [1, 0]
