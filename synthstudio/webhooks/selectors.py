"""Reads for the webhooks pages, scoped to one project."""
from django.shortcuts import get_object_or_404

from annotation.models import Project
from synthstudio.webhooks.models import Delivery, Webhook

RECENT_DELIVERIES = 50


def webhooks_for_project(*, project: Project) -> list[Webhook]:
    return list(Webhook.objects.filter(project=project))


def webhook_get(*, project: Project, webhook_id: int) -> Webhook:
    return get_object_or_404(Webhook, pk=webhook_id, project=project)


def deliveries_recent(*, project: Project, webhook: Webhook | None = None, limit: int = RECENT_DELIVERIES) -> list:
    deliveries = Delivery.objects.filter(webhook__project=project).select_related("webhook").defer("payload")
    if webhook is not None:
        deliveries = deliveries.filter(webhook=webhook)
    return list(deliveries.order_by("-id")[:limit])


def delivery_get(*, project: Project, delivery_id: int) -> Delivery:
    return get_object_or_404(Delivery.objects.select_related("webhook"), pk=delivery_id, webhook__project=project)
