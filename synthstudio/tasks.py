"""Tasks that belong to the whole system rather than to one app."""
from celery import shared_task
from django.db import connection


@shared_task(name="synthstudio.health")
def health(token: str) -> dict:
    """Echo a token with the database vendor and item count, proving a worker reached the broker and the database."""
    from annotation.models import Item

    return {"token": token, "database": connection.vendor, "items": Item.objects.count()}
