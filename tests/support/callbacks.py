"""Telling apart what a transaction runs on commit: the Celery tasks it queues, and event announcements
(annotation/events.py), which every change that publishes an event adds."""
from annotation.events import Announcement


def queued_tasks(callbacks) -> list:
    """The on-commit callbacks that are not event announcements."""
    return [c for c in callbacks if not isinstance(c, Announcement)]
