"""Fixtures for webhook tests: a loopback receiver the deliveries may reach, and a webhook of the project to it."""
import pytest

from synthstudio.webhooks import services
from tests.support.webhook_receiver import Receiver


@pytest.fixture
def allow_loopback(settings):
    """The operator's WEBHOOKS_ALLOW_PRIVATE, so the loopback receiver can be used; a short timeout."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    settings.WEBHOOKS_TIMEOUT_SECONDS = 2.0
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 30.0
    settings.WEBHOOKS_RETRY_FOR_SECONDS = 24 * 3600


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def hook(project, lead, receiver, allow_loopback):
    """A webhook of the project for item.reviewed, pointed at the receiver, which knows its secret."""
    webhook = services.webhook_save(project=project, user=lead, url=receiver.url, events=["item.reviewed"])
    receiver.secret = webhook.secret
    return webhook
