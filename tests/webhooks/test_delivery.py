"""Delivering a project's events to a real loopback receiver: signed, only after commit, retried with backoff after a
failure (non-2xx, redirect, timeout, no connection) for up to the retry window, every attempt logged."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from annotation.events import event_publish
from annotation.queue import services as queue
from synthstudio.webhooks import services
from synthstudio.webhooks.models import Delivery, DeliveryAttempt, Webhook
from tests.support.factories import add_member, make_item, make_project, make_user
from tests.support.webhook_receiver import Receiver, signature_valid


def review(project, user, item, action="accept"):
    item.refresh_from_db()
    return queue.item_review(project=project, item_id=item.pk, user=user, action=action,
                             expected_version=item.version, labels=["positive"], reason="other")


def publish(django_capture_on_commit_callbacks, project, event="item.reviewed", data=None):
    with django_capture_on_commit_callbacks(execute=True):
        event_publish(project_id=project.pk, event=event, data=data or {"item": 1})


def test_a_committed_review_is_delivered_signed(transactional_db, project, annotator, hook, receiver):
    item = make_item(project, "A <b>fine</b> film")
    with transaction.atomic():
        saved = review(project, annotator, item)
        assert not Delivery.objects.exists()  # nothing before the commit
    delivery = Delivery.objects.get()
    assert (delivery.webhook, delivery.event, delivery.status) == (hook, "item.reviewed", Delivery.Status.PENDING)
    assert receiver.received == []  # queued for a worker, not sent from the request

    delivery = services.delivery_attempt(delivery_id=delivery.pk)

    assert delivery.status == Delivery.Status.DELIVERED and delivery.delivered_at is not None
    assert (delivery.response_code, delivery.attempts, delivery.error) == (200, 1, "")
    assert delivery.latency_ms is not None
    [got] = receiver.received
    assert got.signature_ok
    # The check the receiver runs can fail: another secret, or another body, does not verify.
    header = got.headers["X-Synthstudio-Signature"]
    assert not signature_valid(secret="whsec_other", header=header, body=got.body)
    assert not signature_valid(secret=hook.secret, header=header, body=got.body + b" ")
    body = got.json
    assert body["event"] == "item.reviewed" and body["project"] == project.pk
    assert body["data"] == {"item": item.pk, "review": saved.pk, "action": "accept", "reviewer": annotator.username,
                            "second_opinion": False, "status": "accepted", "labels": ["positive"],
                            "text": "A <b>fine</b> film", "version": item.version + 1}
    assert got.headers["X-Synthstudio-Event"] == "item.reviewed"
    assert got.headers["X-Synthstudio-Delivery"] == str(delivery.pk)
    assert got.headers["X-Synthstudio-Event-Id"] == body["id"] == delivery.event_id
    assert got.headers["Content-Type"] == "application/json"
    [attempt] = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.number, attempt.response_code, attempt.response_excerpt) == (1, 200, "ok")


def test_a_rolled_back_review_sends_nothing(transactional_db, project, annotator, hook, receiver):
    item = make_item(project)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            review(project, annotator, item)
            raise RuntimeError("the request failed after the review")
    item.refresh_from_db()
    assert item.status == "needs_review"
    assert not Delivery.objects.exists() and receiver.received == []


def test_a_skip_is_not_announced(project, annotator, hook, django_capture_on_commit_callbacks):
    item = make_item(project)
    queue.queue_claim(project=project, user=annotator)
    with django_capture_on_commit_callbacks(execute=True):
        review(project, annotator, item, action="skip")
    assert not Delivery.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        review(project, annotator, item, action="reject")
    assert Delivery.objects.get().payload["data"]["action"] == "reject"


def test_a_500_is_retried_with_backoff_until_delivered(project, hook, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [500]
    receiver.body = b"database is down"
    publish(django_capture_on_commit_callbacks, project)
    delivery = Delivery.objects.get()

    first = services.delivery_attempt(delivery_id=delivery.pk)
    assert first.status == Delivery.Status.PENDING
    assert (first.response_code, first.attempts) == (500, 1)
    assert first.error == "The receiver answered 500."
    [attempt] = first.attempt_log.all()
    assert attempt.response_excerpt == "database is down"
    assert first.next_attempt_at >= attempt.started_at + timedelta(seconds=30)
    # Not due yet: a task that comes early (a duplicate) sends nothing.
    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    assert len(receiver.received) == 1

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # thirty seconds pass
    second = services.delivery_attempt(delivery_id=delivery.pk)

    assert second.status == Delivery.Status.DELIVERED and (second.response_code, second.attempts) == (200, 2)
    assert [(a.number, a.response_code) for a in second.attempt_log.all()] == [(1, 500), (2, 200)]
    assert [r.signature_ok for r in receiver.received] == [True, True]
    assert len({r.headers["X-Synthstudio-Event-Id"] for r in receiver.received}) == 1
    assert services.delivery_attempt(delivery_id=delivery.pk) is None  # delivered: never sent again by a retry


def test_the_pause_doubles_up_to_six_hours(settings):
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 30
    assert [services.retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert services.retry_delay(12) == services.retry_delay(100) == timedelta(hours=6)


def test_a_delivery_fails_when_the_retry_window_closes_and_can_be_sent_again(
        project, hook, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [503]
    publish(django_capture_on_commit_callbacks, project)
    Delivery.objects.update(created_at=timezone.now() - timedelta(hours=24))
    delivery = services.delivery_attempt(delivery_id=Delivery.objects.get().pk)
    assert delivery.status == Delivery.Status.FAILED and delivery.next_attempt_at is None
    assert delivery.error == "The receiver answered 503. Gave up after 1 attempts."

    with django_capture_on_commit_callbacks(execute=False) as queued:
        again = services.delivery_redeliver(delivery=delivery)
    assert len(queued) == 1  # its task goes out when the transaction commits
    assert (again.status, again.event_id, again.payload, again.redelivery_of) == (
        Delivery.Status.PENDING, delivery.event_id, delivery.payload, delivery)
    again = services.delivery_attempt(delivery_id=again.pk)
    assert again.status == Delivery.Status.DELIVERED
    assert receiver.received[0].json == receiver.received[1].json


def test_a_pending_delivery_cannot_be_sent_again(project, hook, django_capture_on_commit_callbacks):
    publish(django_capture_on_commit_callbacks, project)
    with pytest.raises(services.ServiceError, match="still being sent"):
        services.delivery_redeliver(delivery=Delivery.objects.get())
    assert Delivery.objects.count() == 1


def test_a_timeout_is_a_failed_attempt(project, hook, receiver, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOKS_TIMEOUT_SECONDS = 0.2
    receiver.delay = 1.0
    publish(django_capture_on_commit_callbacks, project)
    delivery = services.delivery_attempt(delivery_id=Delivery.objects.get().pk)
    assert delivery.status == Delivery.Status.PENDING and delivery.response_code is None
    assert delivery.error == "No answer within 0.2 s (timeout)."


def test_a_refused_connection_is_a_failed_attempt(project, lead, allow_loopback, django_capture_on_commit_callbacks):
    with Receiver() as gone:
        url = gone.url
    services.webhook_save(project=project, user=lead, url=url, events=["item.reviewed"])
    publish(django_capture_on_commit_callbacks, project)
    delivery = services.delivery_attempt(delivery_id=Delivery.objects.get().pk)
    assert delivery.status == Delivery.Status.PENDING and delivery.response_code is None
    assert delivery.error.startswith("Could not connect: ConnectError")
    assert delivery.attempt_log.get().error == delivery.error


def test_a_redirect_is_not_followed(project, hook, receiver, django_capture_on_commit_callbacks):
    with Receiver() as elsewhere:
        receiver.statuses = [307]
        receiver.location = elsewhere.url
        publish(django_capture_on_commit_callbacks, project)
        delivery = services.delivery_attempt(delivery_id=Delivery.objects.get().pk)
        assert elsewhere.received == []
    assert delivery.status == Delivery.Status.PENDING and delivery.response_code == 307
    assert delivery.error == "The receiver answered 307 (a redirect, not followed)."


def test_only_active_webhooks_of_the_project_that_take_the_event_get_it(
        project, lead, hook, receiver, django_capture_on_commit_callbacks):
    services.webhook_save(project=project, user=lead, url=receiver.url, events=["job.finished"])
    services.webhook_save(project=project, user=lead, url=receiver.url, events=["item.reviewed"], active=False)
    other = make_project(lead=make_user("elsewhere-lead"), name="Elsewhere")
    services.webhook_save(project=other, user=lead, url=receiver.url, events=["item.reviewed"])
    publish(django_capture_on_commit_callbacks, project)
    assert [d.webhook for d in Delivery.objects.all()] == [hook]


def test_a_webhook_switched_off_sends_nothing_more(project, lead, hook, receiver, django_capture_on_commit_callbacks):
    publish(django_capture_on_commit_callbacks, project)
    services.webhook_save(project=project, user=lead, webhook=hook, url=hook.url, events=hook.events, active=False)
    delivery = services.delivery_attempt(delivery_id=Delivery.objects.get().pk)
    assert (delivery.status, delivery.attempts) == (Delivery.Status.FAILED, 0)
    assert delivery.error == "Not sent: the webhook was switched off."
    assert receiver.received == []


def test_a_deleted_webhook_leaves_its_queued_task_nothing_to_do(project, hook, django_capture_on_commit_callbacks):
    publish(django_capture_on_commit_callbacks, project)
    delivery_id = Delivery.objects.get().pk
    services.webhook_delete(webhook=hook)
    assert services.delivery_attempt(delivery_id=delivery_id) is None
    assert not Webhook.objects.exists() and not Delivery.objects.exists()


def test_a_lost_task_is_queued_again(project, hook, django_capture_on_commit_callbacks):
    publish(django_capture_on_commit_callbacks, project)
    assert services.deliveries_requeue_overdue(project=project) == 0  # due now, its task is on its way
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert services.deliveries_requeue_overdue(project=project) == 1


def test_the_secret_is_generated_and_can_be_replaced(project, lead, hook):
    assert hook.secret.startswith("whsec_") and len(hook.secret) > 40
    other = services.webhook_save(project=project, user=lead, url=hook.url, events=["job.finished"])
    assert other.secret != hook.secret
    old = hook.secret
    kept = services.webhook_save(project=project, user=lead, webhook=hook, url=hook.url, events=hook.events)
    assert kept.secret == old
    replaced = services.webhook_save(project=project, user=lead, webhook=hook, url=hook.url, events=hook.events,
                                     new_secret=True)
    assert replaced.secret != old


def test_events_must_be_known_and_at_least_one(project, lead, hook):
    with pytest.raises(services.WebhookProblem) as refused:
        services.webhook_save(project=project, user=lead, url=hook.url, events=["item.deleted"])
    assert refused.value.problems == [("events", "Unknown events: item.deleted.")]
    with pytest.raises(services.WebhookProblem, match="Choose at least one event"):
        services.webhook_save(project=project, user=lead, url=hook.url, events=[])


def test_a_project_has_at_most_twenty_webhooks(project, lead, hook):
    for _ in range(services.MAX_WEBHOOKS_PER_PROJECT - 1):
        services.webhook_save(project=project, user=lead, url=hook.url, events=["job.finished"])
    with pytest.raises(services.WebhookProblem, match="at most 20 webhooks"):
        services.webhook_save(project=project, user=lead, url=hook.url, events=["job.finished"])
    assert Webhook.objects.filter(project=project).count() == 20


def test_second_opinions_are_announced_as_such(project, lead, annotator, hook, django_capture_on_commit_callbacks):
    second = make_user("second")
    add_member(project, second)
    item = make_item(project, reviews_required=2)
    with django_capture_on_commit_callbacks(execute=True):
        review(project, annotator, item)
        review(project, second, item)
    assert [d.payload["data"]["second_opinion"] for d in Delivery.objects.order_by("id")] == [False, True]
