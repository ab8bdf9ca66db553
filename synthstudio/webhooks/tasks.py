"""Celery tasks for webhooks: thin wrappers that take ids and call one service (synthstudio/webhooks/services.py)."""
from celery import shared_task

from synthstudio.webhooks import services
from synthstudio.webhooks.models import Delivery


@shared_task(bind=True, name="webhooks.deliver")
def deliver(self, delivery_id: int) -> dict:
    """Attempt one delivery; while it stays pending, queue the next attempt for when it is due, on the queue this one
    came from (as Celery's own retry does).

    Safe to run twice: the attempt claims the delivery with a conditional UPDATE, so a duplicate or early task does
    nothing. The retry schedule lives on the row (``next_attempt_at``), not in Celery's retry counter, so a lost task
    is found again by ``webhooks.sweep``."""
    delivery = services.delivery_attempt(delivery_id=delivery_id)
    if delivery is None:
        return {"delivery": delivery_id, "status": "not due"}
    if delivery.status == Delivery.Status.PENDING:
        queue = (self.request.delivery_info or {}).get("routing_key") or None
        self.apply_async((delivery_id,), eta=delivery.next_attempt_at, queue=queue)
    return {"delivery": delivery_id, "status": delivery.status, "attempts": delivery.attempts}


@shared_task(name="webhooks.sweep")
def sweep() -> dict:
    """Queue again the pending deliveries whose task was lost; queued by the webhooks page, or by an operator's
    scheduler (celery beat, cron) every few minutes."""
    return {"requeued": services.deliveries_requeue_overdue()}
