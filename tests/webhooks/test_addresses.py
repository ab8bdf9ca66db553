"""Only public http(s) addresses receive webhooks (SSRF): checked when a webhook is saved and again before every
attempt, on every address the host resolves to, and the request goes to the address checked. The operator's
WEBHOOKS_ALLOW_PRIVATE lifts the address rule (the loopback receiver of these tests)."""
import pytest

from annotation.events import event_publish
from synthstudio.webhooks import sending, services
from synthstudio.webhooks.models import Delivery, Webhook

PUBLIC = "93.184.215.14"  # an address literal: no DNS needed to check it


@pytest.fixture
def private_refused(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False


@pytest.mark.parametrize("url,address,kind", [
    ("http://127.0.0.1/hook", "127.0.0.1", "loopback"),
    ("http://localhost:8000/hook", "127.0.0.1", "loopback"),
    ("http://[::1]:9000/", "::1", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "loopback"),
    ("http://10.1.2.3/", "10.1.2.3", "private"),
    ("https://172.16.5.4/", "172.16.5.4", "private"),
    ("http://192.168.0.10/", "192.168.0.10", "private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
    ("http://[fe80::1]/", "fe80::1", "link-local"),
    ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
    ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    ("http://100.64.0.1/", "100.64.0.1", "not public"),
    ("http://2130706433/", "127.0.0.1", "loopback"),  # 127.0.0.1 written as one number
])
def test_private_addresses_are_refused(private_refused, url, address, kind):
    with pytest.raises(sending.UnsafeURL) as refused:
        sending.url_target(url)
    assert f"resolves to {address}, a {kind} address" in str(refused.value)


@pytest.mark.parametrize("url,message", [
    ("ftp://93.184.215.14/hook", "Only http:// and https://"),
    ("file:///etc/passwd", "Only http:// and https://"),
    ("javascript:alert(1)", "Only http:// and https://"),
    ("http:///no-host", "no host name"),
    ("http://user:secret@93.184.215.14/", "Credentials in the URL"),
    ("http://93.184.215.14:99999/", "not a valid URL"),
    ("http://no-such-host.invalid/", "could not be resolved"),
    ("https://93.184.215.14/" + "a" * 2000, "longer than 2000"),
])
def test_urls_that_are_not_plain_http_are_refused(private_refused, url, message):
    with pytest.raises(sending.UnsafeURL, match=message):
        sending.url_target(url)


def test_public_addresses_pass(private_refused):
    target = sending.url_target(f"https://{PUBLIC}/hook?x=1")
    assert (target.scheme, target.host, target.port, target.addresses) == ("https", PUBLIC, 443, (PUBLIC,))


def test_the_operator_can_allow_private_addresses(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    assert sending.url_target("http://127.0.0.1:8000/hook").addresses == ("127.0.0.1",)


def test_a_webhook_to_a_private_address_is_not_saved(private_refused, project, lead):
    with pytest.raises(services.WebhookProblem) as refused:
        services.webhook_save(project=project, user=lead, url="http://10.0.0.7/hook", events=["item.reviewed"])
    [(field, message)] = refused.value.problems
    assert field == "url" and "10.0.0.7, a private address" in message
    assert not Webhook.objects.exists()


def test_an_address_is_checked_again_when_sent(project, hook, receiver, settings, django_capture_on_commit_callbacks):
    """Saved while allowed; by the time it is sent the rule holds again (as when a name is rebound to 127.0.0.1)."""
    with django_capture_on_commit_callbacks(execute=True):
        event_publish(project_id=project.pk, event="item.reviewed", data={"item": 1})
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    delivery = services.delivery_attempt(delivery_id=Delivery.objects.get().pk)
    assert receiver.received == []
    assert delivery.status == Delivery.Status.PENDING and delivery.response_code is None
    assert delivery.error.startswith("Not sent: The host 127.0.0.1 resolves to 127.0.0.1, a loopback address")
    assert delivery.attempt_log.get().error == delivery.error


def test_the_request_goes_to_the_checked_address_with_the_urls_host(
        project, lead, receiver, allow_loopback, django_capture_on_commit_callbacks):
    hook = services.webhook_save(project=project, user=lead, url=f"http://localhost:{receiver.port}/in?a=1",
                                 events=["job.finished"])
    receiver.secret = hook.secret
    with django_capture_on_commit_callbacks(execute=True):
        event_publish(project_id=project.pk, event="job.finished", data={"job": 1})
    delivery = services.delivery_attempt(delivery_id=Delivery.objects.get().pk)
    assert delivery.status == Delivery.Status.DELIVERED
    [got] = receiver.received
    assert got.path == "/in?a=1" and got.headers["Host"] == f"localhost:{receiver.port}" and got.signature_ok
