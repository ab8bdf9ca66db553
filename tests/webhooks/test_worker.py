"""End to end with a real Celery worker on the configured broker (Redis in CI): an annotator's review through HTTP
commits, the event is recorded, the worker sends it, the receiver answers 500, the worker retries it after the pause,
and the second attempt is delivered, signed."""
import pytest

from annotation.models import Status
from synthstudio.celery import app as celery_app
from synthstudio.webhooks.models import Delivery
from tests.support.factories import make_item
from tests.support.runtime import TEST_QUEUE, start_worker, stop_worker, wait_for, worker_env

pytestmark = pytest.mark.slow


@pytest.fixture
def webhook_worker(transactional_db):
    """A worker that may reach the loopback receiver, with a half-second first pause between attempts."""
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue=TEST_QUEUE, durable=True, auto_delete=False)
        conn.default_channel.queue_purge(TEST_QUEUE)
    proc = start_worker(queue=TEST_QUEUE, env=worker_env(WEBHOOKS_ALLOW_PRIVATE="true",
                                                         WEBHOOKS_RETRY_BASE_SECONDS="0.5",
                                                         WEBHOOKS_TIMEOUT_SECONDS="5"))
    try:
        yield proc
    finally:
        output = stop_worker(proc)
        if "Traceback" in output:
            print(output)


def test_a_review_reaches_the_receiver_through_a_real_worker(webhook_worker, client, project, annotator, hook,
                                                             receiver):
    receiver.statuses = [500]
    item = make_item(project, "a wonderful, moving film")
    client.force_login(annotator)
    response = client.post(f"/projects/{project.id}/queue/items/{item.id}/",
                           {"action": "accept", "version": item.version, "labels": "positive"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == Status.ACCEPTED

    first, second = receiver.wait_for_requests(2)
    delivery = wait_for(lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).first(),
                        what="the delivery to be marked delivered")
    assert (delivery.event, delivery.attempts, delivery.response_code) == ("item.reviewed", 2, 200)
    assert [(a.number, a.response_code) for a in delivery.attempt_log.all()] == [(1, 500), (2, 200)]
    assert first.signature_ok and second.signature_ok
    assert first.json["id"] == second.json["id"] == delivery.event_id
    assert second.json["data"]["item"] == item.id and second.json["data"]["reviewer"] == annotator.username
    assert len(receiver.received) == 2
