"""The lead's Webhooks page: a project's webhooks (add, edit, delete), their recent deliveries, "send again". Thin:
access -> form -> service -> render or redirect."""
from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotation.errors import ServiceError
from annotation.permissions import LEAD, project_view
from synthstudio.lib.pages import render_page
from synthstudio.webhooks import selectors, services
from synthstudio.webhooks.forms import WebhookEditForm, WebhookForm
from synthstudio.webhooks.models import Delivery


@project_view(LEAD)
def webhook_list(request, access):
    """The project's webhooks and recent deliveries (the table alone for htmx, polled while any is pending); POST adds
    a webhook."""
    form = WebhookForm(request.POST or None, initial={"active": True})
    if request.method == "POST":
        webhook = _saved(request, access, form)
        if webhook is not None:
            messages.success(request, "Webhook added. Give its secret, shown here, to the receiver.")
            return redirect("webhook", project_id=access.project.id, webhook_id=webhook.id)
    services.deliveries_requeue_overdue(project=access.project)
    deliveries = selectors.deliveries_recent(project=access.project)
    return render_page(request, access, "webhooks/webhooks.html", partial="webhooks/_deliveries.html", form=form,
                       webhooks=selectors.webhooks_for_project(project=access.project), deliveries=deliveries,
                       polling=any(d.status == Delivery.Status.PENDING for d in deliveries))


@project_view(LEAD)
def webhook_edit(request, access, webhook_id):
    webhook = selectors.webhook_get(project=access.project, webhook_id=webhook_id)
    initial = {"url": webhook.url, "events": webhook.events, "active": webhook.active}
    form = WebhookEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and _saved(request, access, form, webhook=webhook) is not None:
        messages.success(request, "Webhook saved.")
        return redirect("webhook", project_id=access.project.id, webhook_id=webhook.id)
    return render_page(request, access, "webhooks/webhook_edit.html", form=form, webhook=webhook,
                       deliveries=selectors.deliveries_recent(project=access.project, webhook=webhook))


@require_POST
@project_view(LEAD)
def webhook_delete(request, access, webhook_id):
    webhook = selectors.webhook_get(project=access.project, webhook_id=webhook_id)
    services.webhook_delete(webhook=webhook)
    messages.info(request, f"Webhook {webhook.url} deleted with its deliveries.")
    return redirect("webhooks", project_id=access.project.id)


@project_view(LEAD)
def delivery_detail(request, access, delivery_id):
    delivery = selectors.delivery_get(project=access.project, delivery_id=delivery_id)
    return render_page(request, access, "webhooks/delivery.html", delivery=delivery,
                       attempts=list(delivery.attempt_log.all()), body=services.body_of(delivery).decode())


@require_POST
@project_view(LEAD)
def delivery_again(request, access, delivery_id):
    delivery = selectors.delivery_get(project=access.project, delivery_id=delivery_id)
    try:
        again = services.delivery_redeliver(delivery=delivery)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Sending {again.event} again (delivery #{again.id}).")
    return redirect("webhooks", project_id=access.project.id)


def _saved(request, access, form, webhook=None):
    if not form.is_valid():
        return None
    try:
        return services.webhook_save(project=access.project, user=request.user, webhook=webhook,
                                     **form.save_kwargs())
    except services.WebhookProblem as exc:
        for field, message in exc.problems:
            form.add_error(field, message)
        return None
