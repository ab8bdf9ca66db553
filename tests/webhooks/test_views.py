"""The lead's Webhooks pages: who may open them, adding / editing / deleting a webhook, the deliveries with their
status, code, latency and attempts, "send again", and LLM or receiver text shown escaped."""
import pytest
from django.urls import reverse

from synthstudio.webhooks import services
from synthstudio.webhooks.models import Delivery, DeliveryAttempt, Webhook
from tests.support.visits import VISITORS, visitor_client

PAGES = ["webhooks", "webhook", "webhook_delete", "webhook_delivery", "webhook_delivery_again"]
# Refused for their method before anyone is looked at: a GET tells nobody anything.
POST_ONLY = {"webhook_delete", "webhook_delivery_again"}
# What each visitor gets, GET and POST: every page is the project lead's.
EXPECTED = {"lead": None, "annotator": 403, "outsider": 404, "anonymous": "login"}


@pytest.fixture
def delivery(hook):
    return Delivery.objects.create(webhook=hook, event="item.reviewed", event_id="e1", payload={"data": {}},
                                   status=Delivery.Status.FAILED, attempts=1, response_code=500, latency_ms=12,
                                   error="The receiver answered 500.")


def url_of(name, project, hook, delivery):
    args = {"webhooks": [], "webhook": [hook.id], "webhook_delete": [hook.id], "webhook_delivery": [delivery.id],
            "webhook_delivery_again": [delivery.id]}[name]
    return reverse(name, args=[project.id, *args])


@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("name", PAGES)
def test_only_the_projects_leads_reach_the_pages(request, client, project, hook, delivery, name, who):
    url = url_of(name, project, hook, delivery)
    client = visitor_client(request, client, who)
    for method in ("get", "post"):
        if who == "lead" and method == "post" and name in ("webhook_delete",):
            continue  # the lead's delete is checked below, where it is meant
        response = getattr(client, method)(url)
        expected = 405 if method == "get" and name in POST_ONLY else EXPECTED[who]
        if expected is None:
            assert response.status_code in (200, 302), (method, response.status_code)
        elif expected == "login":
            assert response.status_code == 302 and response["Location"].startswith(reverse("login")), method
        else:
            assert response.status_code == expected, method
    if who != "lead":
        assert Webhook.objects.get() == hook and Delivery.objects.count() == 1  # nothing written


def test_the_nav_links_the_page_for_leads_only(client, project, lead, annotator):
    link = f'href="{reverse("webhooks", args=[project.id])}"'
    client.force_login(lead)
    assert link in client.get(reverse("project_settings", args=[project.id])).content.decode()
    client.force_login(annotator)
    assert link not in client.get(reverse("queue", args=[project.id])).content.decode()


def test_a_lead_adds_a_webhook_and_sees_its_secret(client, project, lead, receiver, allow_loopback):
    client.force_login(lead)
    response = client.post(reverse("webhooks", args=[project.id]),
                           {"url": receiver.url, "events": ["job.finished", "item.reviewed"], "active": "on"})
    hook = Webhook.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("webhook", args=[project.id, hook.id])
    assert (hook.url, hook.events, hook.active, hook.created_by) == (
        receiver.url, ["item.reviewed", "job.finished"], True, lead)
    page = client.get(response["Location"]).content.decode()
    assert hook.secret in page and "Webhook added" in page


def test_a_private_address_is_refused_on_the_page(client, project, lead, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    client.force_login(lead)
    response = client.post(reverse("webhooks", args=[project.id]),
                           {"url": "http://169.254.169.254/latest/", "events": ["item.reviewed"]})
    assert response.status_code == 200
    assert "169.254.169.254, a link-local address" in response.content.decode()
    assert not Webhook.objects.exists()


def test_a_lead_edits_and_replaces_the_secret(client, project, lead, hook):
    client.force_login(lead)
    old = hook.secret
    response = client.post(reverse("webhook", args=[project.id, hook.id]),
                           {"url": hook.url, "events": ["round.finished"], "new_secret": "on"})
    assert response.status_code == 302
    hook.refresh_from_db()
    assert hook.events == ["round.finished"] and hook.active is False and hook.secret != old


def test_a_lead_deletes_a_webhook_with_its_deliveries(client, project, lead, hook, delivery):
    client.force_login(lead)
    response = client.post(reverse("webhook_delete", args=[project.id, hook.id]))
    assert response.status_code == 302 and response["Location"] == reverse("webhooks", args=[project.id])
    assert not Webhook.objects.exists() and not Delivery.objects.exists()
    assert client.get(reverse("webhook_delete", args=[project.id, hook.id])).status_code == 405


def test_the_page_lists_deliveries_and_polls_while_one_is_pending(client, project, lead, hook, delivery):
    client.force_login(lead)
    url = reverse("webhooks", args=[project.id])
    page = client.get(url).content.decode()
    assert "The receiver answered 500." in page and "12 ms" in page and "Send again" in page
    assert 'hx-trigger="every 2s"' not in page
    Delivery.objects.create(webhook=hook, event="job.finished", event_id="e2", payload={})
    fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<section id="deliveries"') and "<html" not in fragment
    assert 'hx-trigger="every 2s"' in fragment and "job.finished" in fragment


def test_send_again_queues_a_new_delivery(client, project, lead, delivery, django_capture_on_commit_callbacks):
    client.force_login(lead)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(reverse("webhook_delivery_again", args=[project.id, delivery.id]))
    assert response.status_code == 302 and len(queued) == 1
    again = Delivery.objects.exclude(pk=delivery.pk).get()
    assert (again.status, again.event_id, again.redelivery_of) == (Delivery.Status.PENDING, "e1", delivery)
    # Pending: not sent twice.
    response = client.post(reverse("webhook_delivery_again", args=[project.id, again.id]), follow=True)
    assert "still being sent" in response.content.decode() and Delivery.objects.count() == 2


def test_receiver_answers_and_payloads_are_shown_escaped(client, project, lead, hook, delivery):
    services_payload = {"data": {"text": "<script>alert('llm')</script>"}}
    Delivery.objects.filter(pk=delivery.pk).update(payload=services_payload)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=delivery.created_at, response_code=500,
                                   error="The receiver answered 500.", response_excerpt="<img src=x onerror=alert(1)>")
    client.force_login(lead)
    page = client.get(reverse("webhook_delivery", args=[project.id, delivery.id])).content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;script&gt;" in page
    assert services.body_of(Delivery.objects.get(pk=delivery.pk)).decode().startswith('{"data":')
