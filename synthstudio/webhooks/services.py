"""Writes for webhooks: save and delete a project's webhooks, record an event's deliveries, attempt one, send again.

A delivery is attempted by the Celery task ``webhooks.deliver`` (tasks.py), queued once the transaction that recorded
it commits. ``delivery_attempt`` claims the delivery with a conditional UPDATE (pending, due), so two workers never
send it at once and a duplicate task does nothing; the claim moves ``next_attempt_at`` past the longest an attempt can
take, so an attempt whose worker died becomes due again. Every attempt is a ``DeliveryAttempt`` row. A 2xx answer
delivers; anything else (another status, a redirect, a timeout, no connection, an address refused at send time) is
retried after ``WEBHOOKS_RETRY_BASE_SECONDS`` x 2^(attempt-1), at most six hours apart, while the next attempt still
falls within ``WEBHOOKS_RETRY_FOR_SECONDS`` (a day) of the event; then the delivery is failed.
"""
import json
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.events import EVENTS
from annotation.models import Project
from synthstudio.webhooks import sending
from synthstudio.webhooks.models import Delivery, DeliveryAttempt, Webhook

MAX_WEBHOOKS_PER_PROJECT = 20
SECRET_PREFIX = "whsec_"
MAX_RETRY_DELAY = timedelta(hours=6)
# A pending delivery this far past its due time has lost its queued task (a broker that dropped it): sent again.
OVERDUE_AFTER = timedelta(minutes=1)
SWEEP_BATCH = 500


class WebhookProblem(ServiceError):
    """A webhook that cannot be saved; ``problems`` pairs a field name with its message."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__(" ".join(message for _, message in problems))


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_save(*, project: Project, user, url: str, events: list[str], active: bool = True,
                 webhook: Webhook | None = None, new_secret: bool = False) -> Webhook:
    """Create a webhook (``webhook`` None) or change one; the URL is checked as a delivery would check it."""
    problems = []
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        problems.append(("events", f"Unknown events: {', '.join(unknown)}."))
    elif not events:
        problems.append(("events", "Choose at least one event."))
    try:
        url = sending.url_target(url).url
    except sending.UnsafeURL as exc:
        problems.append(("url", str(exc)))
    if problems:
        raise WebhookProblem(problems)
    with transaction.atomic():
        # Creations in one project take turns, so the limit holds with two leads at once.
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()
        if webhook is None:
            if Webhook.objects.filter(project=project).count() >= MAX_WEBHOOKS_PER_PROJECT:
                raise WebhookProblem([("url", f"A project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks; delete "
                                              "one first.")])
            webhook = Webhook(project=project, created_by=user, secret=_new_secret())
        elif new_secret:
            webhook.secret = _new_secret()
        webhook.url = url
        webhook.events = [name for name in EVENTS if name in events]
        webhook.active = active
        webhook.save()
    return webhook


def webhook_delete(*, webhook: Webhook) -> None:
    """Delete the webhook with its deliveries; a delivery's task that comes later finds nothing and does nothing."""
    webhook.delete()


def deliveries_create(*, project_id: int, event: str, data: dict, event_id: str, occurred_at) -> list[Delivery]:
    """Record ``event`` for every active webhook of the project that takes it, and queue each delivery on commit."""
    from synthstudio.webhooks import tasks  # tasks imports this module

    hooks = [hook for hook in Webhook.objects.filter(project_id=project_id, active=True) if event in hook.events]
    if not hooks:
        return []
    payload = {"id": event_id, "event": event, "project": project_id, "occurred_at": occurred_at.isoformat(),
               "data": data}
    now = timezone.now()
    with transaction.atomic():
        deliveries = [Delivery.objects.create(webhook=hook, event=event, event_id=event_id, payload=payload,
                                              next_attempt_at=now, created_at=now) for hook in hooks]
        for delivery in deliveries:
            tasks.deliver.delay_on_commit(delivery.pk)
    return deliveries


def retry_delay(attempt: int) -> timedelta:
    """How long after failed attempt number ``attempt`` (1, 2, ...) the next one starts."""
    base = timedelta(seconds=settings.WEBHOOKS_RETRY_BASE_SECONDS)
    return min(base * 2 ** min(attempt - 1, 30), MAX_RETRY_DELAY)


def _attempt_bound() -> timedelta:
    """Longer than any attempt takes (connect, send, first answer, excerpt): an attempt older than this was lost."""
    return timedelta(seconds=4 * settings.WEBHOOKS_TIMEOUT_SECONDS + 60)


def body_of(delivery: Delivery) -> bytes:
    """The bytes sent (and signed) for the delivery: its payload as compact JSON with sorted keys."""
    return json.dumps(delivery.payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def delivery_attempt(*, delivery_id: int) -> Delivery | None:
    """Send the delivery once if it is pending and due; None when it is not (done, not due, or another worker has
    it)."""
    now = timezone.now()
    claimed = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now).update(
        attempts=F("attempts") + 1, next_attempt_at=now + _attempt_bound(), last_attempt_at=now)
    if not claimed:
        return None
    delivery = Delivery.objects.select_related("webhook").get(pk=delivery_id)
    hook = delivery.webhook
    if not hook.active:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.FAILED, next_attempt_at=None, attempts=F("attempts") - 1,
            error="Not sent: the webhook was switched off.")
        delivery.refresh_from_db()
        return delivery
    outcome = sending.send(url=hook.url, secret=hook.secret, body=body_of(delivery), headers={
        "X-Synthstudio-Event": delivery.event, "X-Synthstudio-Delivery": str(delivery.pk),
        "X-Synthstudio-Event-Id": delivery.event_id})
    return _record(delivery=delivery, started=now, outcome=outcome)


@transaction.atomic
def _record(*, delivery: Delivery, started, outcome: sending.Outcome) -> Delivery:
    now = timezone.now()
    DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempts, started_at=started,
                                   response_code=outcome.response_code, latency_ms=outcome.latency_ms,
                                   error=outcome.error[:500], response_excerpt=outcome.excerpt[:500])
    changes = {"response_code": outcome.response_code, "latency_ms": outcome.latency_ms, "error": outcome.error[:500]}
    if outcome.ok:
        changes.update(status=Delivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None)
    else:
        retry_at = now + retry_delay(delivery.attempts)
        if retry_at - delivery.created_at <= timedelta(seconds=settings.WEBHOOKS_RETRY_FOR_SECONDS):
            changes.update(next_attempt_at=retry_at)
        else:
            changes.update(status=Delivery.Status.FAILED, next_attempt_at=None,
                           error=f"{outcome.error} Gave up after {delivery.attempts} attempts."[:500])
    # Only the attempt that holds the claim records; a claim lost meanwhile (an attempt past its bound) is left alone.
    Delivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts,
                            status=Delivery.Status.PENDING).update(**changes)
    delivery.refresh_from_db()
    return delivery


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivered or failed delivery's event again, as a new delivery with the same event id and payload."""
    from synthstudio.webhooks import tasks  # tasks imports this module

    if delivery.status == Delivery.Status.PENDING:
        raise ServiceError("This delivery is still being sent; wait for it to be delivered or to fail.")
    now = timezone.now()
    with transaction.atomic():
        again = Delivery.objects.create(webhook=delivery.webhook, event=delivery.event, event_id=delivery.event_id,
                                        payload=delivery.payload, next_attempt_at=now, created_at=now,
                                        redelivery_of=delivery)
        tasks.deliver.delay_on_commit(again.pk)
    return again


def deliveries_requeue_overdue(*, project: Project | None = None, limit: int = SWEEP_BATCH) -> int:
    """Queue again the pending deliveries (of ``project``, or all) well past their due time, whose task was lost;
    returns how many. A delivery queued twice is still sent once (the attempt's claim)."""
    from synthstudio.webhooks import tasks  # tasks imports this module

    cutoff = timezone.now() - OVERDUE_AFTER
    overdue = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=cutoff)
    if project is not None:
        overdue = overdue.filter(webhook__project=project)
    overdue = list(overdue.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for pk in overdue:
        tasks.deliver.delay(pk)
    return len(overdue)
