"""A real Celery worker killed with SIGKILL in the middle of a generation job: the job still finishes, nothing is lost
and nothing is stored twice.

Two ways a worker dies:
- its pool process is killed (the OOM killer's way): the worker sees the loss and, because the task is ``acks_late``
  with ``reject_on_worker_lost``, puts the message back at once; a new pool process runs it again;
- the whole worker is killed: the message stays unacknowledged in Redis and is handed out again by the next worker
  that starts once the visibility timeout has passed (kombu restores unacked messages when a consumer starts, and
  every ``unacked_restore_interval`` x ``unacked_restore_throttle`` seconds after). The filesystem transport deletes a
  message when it hands it out, so there the whole-worker case loses the message: RELIABILITY.md says so.

Either way the redelivered task has the same id, so it re-claims its own running job and resumes at the first batch not
yet stored; the batch the dead worker had in flight is run again, and stored once.
"""
import os
import signal
import time
import uuid
from collections import Counter

import pytest

from annotation.models import Item
from generation import services
from generation.models import GenerationBatch, GenerationJob, JobEvent, JobMode, JobStatus
from tests.support.jobs import seed
from tests.support.llm_server import LLMServer
from tests.support.runtime import Broker, children_of, start_worker, stop_worker, wait_for, worker_env

# Real workers, killed and restarted. The Redis cases share one database with a 2 s visibility timeout, and a worker
# that starts restores every unacknowledged message older than that: run in parallel, one case's restart would hand
# the other case's running task out again. One xdist worker runs them all, one after the other.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("redis-visibility-timeout")]

SEEDS = {
    "positive": ["A wonderful film with a brilliant cast.", "I loved every minute of this moving story."],
    "negative": ["A boring, dull mess with awful dialogue.", "I hated the plot and the acting was terrible."],
}


@pytest.fixture
def seeded(transactional_db, project):
    seed(project, SEEDS)
    return project


def first_batches_or_end(job_id: int) -> bool:
    # The end too: a job that fails at once fails the test at once (below), not after the hang bound.
    job = GenerationJob.objects.get(pk=job_id)
    return job.batches_done >= 2 or not job.is_active


@pytest.mark.parametrize("broker_kind,killed", [
    ("redis", "pool process"),
    ("redis", "whole worker"),
    ("filesystem", "pool process"),
])
def test_a_job_finishes_after_its_worker_is_killed(seeded, lead, tmp_path, broker_kind, killed):
    broker = Broker(broker_kind, tmp_path)
    queue = f"rel-kill-{uuid.uuid4().hex[:8]}"
    with LLMServer(seed=11, latency=0.05, retry_after=0.05) as llm:
        env = worker_env(OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="sk-test", OPENAI_TIMEOUT="10",
                         **broker.env)
        job = services.job_create(project=seeded, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                                  options={"count": 40, "samples_per_request": 2, "requests_per_batch": 2,
                                           "exemplars": 1, "max_concurrency": 2}, enqueue=False)
        assert job.batches_total == 10
        pool = "solo" if killed == "whole worker" else "prefork"
        worker = start_worker(queue=queue, env=env, concurrency=1, pool=pool)
        second = None
        try:
            broker.send("generation.job_run", job.id, queue=queue)
            wait_for(lambda: first_batches_or_end(job.id), what="the first batches", interval=0.1)
            victim = worker.pid if killed == "whole worker" else children_of(worker.pid)[0]
            os.kill(victim, signal.SIGKILL)
            at_kill = GenerationJob.objects.get(pk=job.id)
            assert at_kill.status == JobStatus.RUNNING and at_kill.batches_done < at_kill.batches_total
            if killed == "whole worker":
                worker.wait(timeout=10)
                time.sleep(2.5)  # past the visibility timeout, so the next worker restores the message on start
                second = start_worker(queue=queue, env=env, concurrency=1)
            wait_for(lambda: not GenerationJob.objects.get(pk=job.id).is_active, what="the job to end")
        finally:
            log = stop_worker(worker) + (stop_worker(second) if second else "")

    job.refresh_from_db()
    events = list(JobEvent.objects.filter(job=job).values_list("kind", "message"))
    assert job.status == JobStatus.SUCCEEDED, (events, log)
    assert [kind for kind, _ in events].count("claimed") >= 2, "the job was not resumed by a redelivered task"
    assert job.produced + job.filtered + job.failed == job.requested == 40
    assert job.batches_done == job.batches_total == GenerationBatch.objects.filter(job=job, done=True).count()
    keys = list(Item.objects.filter(generation_job_id=job.id).values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys)) == job.produced + job.filtered
    # Every batch stored exactly what its outcome says: none lost, none twice.
    per_batch = Counter(key.split(":")[1] for key in keys)
    for batch in GenerationBatch.objects.filter(job=job):
        assert per_batch[f"b{batch.index}"] == batch.outcome["produced"] + batch.outcome["filtered"]
