from django.apps import AppConfig


def _event_received(sender, *, project_id: int, event: str, data: dict, event_id: str, occurred_at, **kwargs):
    from synthstudio.webhooks import services

    services.deliveries_create(project_id=project_id, event=event, data=data, event_id=event_id,
                               occurred_at=occurred_at)


class WebhooksConfig(AppConfig):
    name = "synthstudio.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from annotation.events import event_published

        event_published.connect(_event_received, dispatch_uid="webhooks.event_received")
