"""The API's visitors: a token for the lead, the project's annotator and another project's annotator, the lead's
revoked and expired tokens, and nobody; and a client that sends a token as ``Authorization: Bearer``."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation.models import ScoringRound
from synthstudio.api import tokens

API = "/api/v1"
VISITORS = ("anonymous", "revoked", "expired", "outsider", "annotator", "lead")


class ApiClient:
    """Django's test client with a bearer token (or none); ``json`` bodies are sent as JSON."""

    def __init__(self, token: str | None = None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, json=None, **kwargs):
        url = path if path.startswith("/") else f"{API}/{path}"
        if json is not None:
            kwargs.update(data=json, content_type="application/json")
        return getattr(self.client, method)(url, headers=self.headers, **kwargs)

    def get(self, path, **kwargs):
        return self.call("get", path, **kwargs)

    def post(self, path, json=None, **kwargs):
        return self.call("post", path, json=json, **kwargs)


def token_for(user, **kwargs) -> str:
    return tokens.token_create(user=user, name="tests", **kwargs).secret


@pytest.fixture
def visitor_tokens(lead, annotator, outsider, project):
    revoked = tokens.token_create(user=lead, name="revoked")
    tokens.token_revoke(user=lead, token_id=revoked.token.pk)
    expired = tokens.token_create(user=lead, name="expired", expires_at=timezone.now() + timedelta(seconds=30))
    type(expired.token).objects.filter(pk=expired.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return {"anonymous": None, "revoked": revoked.secret, "expired": expired.secret, "outsider": token_for(outsider),
            "annotator": token_for(annotator), "lead": token_for(lead)}


@pytest.fixture
def as_lead(lead, project):
    return ApiClient(token_for(lead))


@pytest.fixture
def as_annotator(annotator, project):
    return ApiClient(token_for(annotator))


@pytest.fixture
def api_world(world, project):
    """make_world's objects plus a finished scoring round (the routing endpoints read the latest one)."""
    ScoringRound.objects.create(project=project, model_version=1, state=ScoringRound.State.DONE)
    return world


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Rate-limit counts live in the cache, which outlives a test's database."""
    from django.core.cache import cache

    cache.clear()
