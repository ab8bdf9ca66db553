"""Webhooks: a project's events (annotation/events.py) sent, signed, to the URLs its leads choose, retried for a day."""
