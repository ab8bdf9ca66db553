"""Every API operation, called as each visitor: nobody, the lead's revoked and expired tokens, another project's
annotator, the project's annotator and its lead (table-driven, as tests/system/test_urlconf_permissions.py).

The table below names each operation's access level and a real attempt (a body a lead's call would act on). Every
operation of the OpenAPI schema must be in it, so a new endpoint fails here until its level is declared. A refused
call writes nothing (the token's own last-used time aside). Objects of another project are not found through this one.
"""
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.models import Project, Role, ScoringRound
from synthstudio.api.api import api
from tests.api.conftest import VISITORS, ApiClient
from tests.support.factories import make_world
from tests.support.visits import project_rows

# What a visitor who may not call the operation gets, by its access level.
DENIED = {
    "public": {},
    "user": {"anonymous": 401, "revoked": 401, "expired": 401},
    "member": {"anonymous": 401, "revoked": 401, "expired": 401, "outsider": 404},
    "lead": {"anonymous": 401, "revoked": 401, "expired": 401, "outsider": 404, "annotator": 403},
}


def _csv():
    return {"file": SimpleUploadedFile("pool.csv", b"text\nan imported row\n", content_type="text/csv")}


# operationId -> (access level, keyword arguments of a real attempt). Objects come from make_world.
OPERATIONS = {
    "project_list": ("user", {}),
    "project_create": ("user", {"json": {"name": "Made by the API"}}),
    "project_get": ("member", {}),
    "project_update": ("lead", {"json": {"name": "Renamed"}}),
    "member_list": ("lead", {}),
    "member_add": ("lead", {"json": {"identifier": "outsider", "role": Role.LEAD}}),
    "member_set_role": ("lead", {"json": {"role": Role.LEAD}}),
    "member_remove": ("lead", {}),
    "label_list": ("member", {}),
    "label_create": ("lead", {"json": {"name": "neutral"}}),
    "label_update": ("lead", {"json": {"name": "taken over"}}),
    "label_delete": ("lead", {}),
    "attribute_list": ("lead", {}),
    "attribute_create": ("lead", {"json": {"name": "style", "values": ["formal"]}}),
    "attribute_update": ("lead", {"json": {"name": "taken over", "values": ["x"]}}),
    "attribute_delete": ("lead", {}),
    "item_list": ("lead", {}),
    "item_get": ("lead", {}),
    "item_bulk_create": ("lead", {"json": {"items": [{"text": "a new item from the API"}]}}),
    "import_create": ("lead", {"data": _csv}),
    "import_get": ("lead", {}),
    "export": ("lead", {}),
    "queue_next": ("member", {}),
    "queue_review": ("member", {"json": {"action": "accept", "version": 1, "labels": ["positive"]}}),
    "queue_undo": ("member", {}),
    "queue_progress": ("member", {}),
    "job_create": ("lead", {"json": {"mode": "label_pool", "provider": "offline", "options": {"count": 1}}}),
    "job_list": ("lead", {}),
    "job_get": ("lead", {}),
    "job_cancel": ("lead", {}),
    "job_outcomes": ("lead", {}),
    "round_request": ("lead", {}),
    "round_latest": ("lead", {}),
    "estimates": ("lead", {}),
    "routing_state": ("lead", {}),
}


def _operations():
    schema = api.get_openapi_schema(path_prefix="/api/v1/")
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield operation["operationId"].removeprefix("synthstudio_api_").split("_", 1)[1], method, path


OPS = sorted(_operations())


def test_every_operation_of_the_schema_has_a_row_in_the_table():
    assert sorted(name for name, _, _ in OPS) == sorted(OPERATIONS)


def fill(path: str, world: dict) -> str:
    def value(match):
        name = match.group(1)
        if name == "job_id":
            return str(world[("job_id", "annotation" if "/imports/" in path else "generation")])
        return str(world[name])
    return re.sub(r"\{(\w+)\}", value, path)


def _kwargs(attempt: dict) -> dict:
    return {k: (v() if callable(v) else v) for k, v in attempt.items()}


def _call(client: ApiClient, method: str, url: str, attempt: dict):
    """The response (its streamed body read), and the statements it wrote other than a token's last-used time."""
    with CaptureQueriesContext(connection) as queries:
        response = client.call(method, url, **_kwargs(attempt))
        if response.streaming:
            b"".join(response.streaming_content)
    writes = [q["sql"] for q in queries if q["sql"].lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")
              and "api_apitoken" not in q["sql"]]
    return response, writes


@pytest.mark.parametrize("name,method,path", OPS, ids=[f"{m.upper()} {n}" for n, m, _ in OPS])
def test_every_operation_answers_each_visitor_as_its_access_level_says(api_world, visitor_tokens, name, method,
                                                                        path):
    level, attempt = OPERATIONS[name]
    url = fill(path, api_world)
    problems = []
    for who in VISITORS:  # refused visitors first, the lead last: its attempt may delete the object
        response, writes = _call(ApiClient(visitor_tokens[who]), method, url, attempt)
        denied = DENIED[level].get(who)
        status = response.status_code
        if status >= 500:
            problems.append(f"{who}: server error {status}")
        elif denied is not None and status != denied:
            problems.append(f"{who}: expected {denied}, got {status}")
        elif denied is not None and writes:
            problems.append(f"{who}: refused, but wrote {writes}")
        elif denied is None and status in (401, 403, 404):
            problems.append(f"{who}: allowed, but got {status} {response.content[:200]!r}")
        if denied == 401 and not response.get("Content-Type", "").startswith("application/json"):
            problems.append(f"{who}: a 401 should be JSON, got {response.get('Content-Type')}")
    assert problems == [], f"{method.upper()} {path} ({level})"


OBJECT_OPS = [op for op in OPS if set(re.findall(r"\{(\w+)\}", op[2])) - {"project_id"}]


@pytest.mark.parametrize("name,method,path", OBJECT_OPS, ids=[f"{m.upper()} {n}" for n, m, _ in OBJECT_OPS])
def test_objects_of_another_project_are_not_found_through_this_one(api_world, visitor_tokens, name, method, path):
    other = Project.objects.get(name="Other")
    ScoringRound.objects.create(project=other, model_version=1, state=ScoringRound.State.DONE)
    foreign = {**make_world(project=other, lead=other.memberships.get(role=Role.LEAD).user),
               "project_id": api_world["project_id"]}
    before = project_rows(other)
    response, _ = _call(ApiClient(visitor_tokens["lead"]), method, fill(path, foreign), OPERATIONS[name][1])
    # The queue answers a review of an item it cannot find in this project with the services' refusal (400).
    assert response.status_code in ((404, 400) if name == "queue_review" else (404,))
    assert project_rows(other) == before


def test_a_token_in_a_malformed_header_or_of_unknown_shape_gets_401(api_world):
    for header in ("Bearer", "Bearer ss_", "Bearer ss_12345678_nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000):
        response = ApiClient().client.get("/api/v1/projects", headers={"Authorization": header})
        assert response.status_code == 401, header
