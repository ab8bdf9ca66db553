"""What happened in a project, announced to the apps that react to it (webhooks), which annotation and generation
never import.

A service calls ``event_publish`` inside its own transaction; subscribers hear of it only once that transaction commits
(``transaction.on_commit``), so a rolled-back review announces nothing. Subscribers connect to ``event_published`` in
their AppConfig.ready(); they receive ``project_id``, ``event``, ``data`` (JSON values, frozen when published),
``event_id`` (a UUID string) and ``occurred_at``. A subscriber that fails is logged (``django.dispatch``) and never
undoes or breaks the change already committed.
"""
import json
import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

# Every event a project announces, with the sentence a lead reads when choosing what a webhook receives.
EVENTS = {
    "item.reviewed": "A person accepted, edited or rejected an item (second opinions included; skips are not).",
    "job.finished": "A generation or labelling job ended: succeeded, failed or cancelled.",
    "round.finished": "A scoring round finished routing the project's items.",
    "target.reached": "The dataset reached the target accuracy with 95% confidence.",
    "llm.unreliable": "Calibration showed the LLM's labels cannot meet the target; auto-accept is off.",
    "import.finished": "An import ended: done or failed.",
}

event_published = Signal()


class Announcement:
    """The on-commit callback that sends one event to the subscribers (a class, so tests that count the tasks a
    transaction queues can tell it apart)."""

    def __init__(self, **message):
        self.message = message

    def __call__(self):
        event_published.send_robust(sender=None, **self.message)


def event_publish(*, project_id: int, event: str, data: dict) -> None:
    """Announce ``event`` with ``data`` once the current transaction commits (at once outside a transaction)."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; add it to annotation.events.EVENTS")
    if not event_published.has_listeners():
        return
    message = {
        "project_id": project_id,
        "event": event,
        # The values as they are now: a later change to the caller's objects must not change what is announced.
        "data": json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
        "event_id": str(uuid.uuid4()),
        "occurred_at": timezone.now(),
    }
    transaction.on_commit(Announcement(**message))
