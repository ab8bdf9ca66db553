"""Schemathesis over the API's own OpenAPI schema, stateless and bounded: requests generated from the schema, sent
through the WSGI application as the lead (on the project's real objects), never answer 500, and every answer matches
what the schema says of its status, content type, headers and body."""
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import token_for

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture
def lead_token(api_world, lead):
    return token_for(lead)


@pytest.fixture
def connection_kept():
    """The WSGI handler closes the database connection after each request, as in production; Django's test client
    keeps it (the test's transaction lives on it), and so must these requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_api_answers_as_its_schema_says(case, api_world, lead_token, connection_kept):
    # Real objects, so that requests reach the services rather than stop at 404.
    for name in case.path_parameters or {}:
        key = ("job_id", "annotation" if "/imports/" in case.path else "generation") if name == "job_id" else name
        case.path_parameters[name] = api_world[key]
    case.call_and_validate(headers={"Authorization": f"Bearer {lead_token}"}, checks=CHECKS)
