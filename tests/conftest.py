"""Shared fixtures: the four visitors (lead, annotator, outsider, anonymous), a project, one of everything a URL can
point at, and real service helpers; and the ``slow`` marker for tests that start real processes."""

import pytest
from django.conf import settings

from synthstudio.celery import app as celery_app
from tests.support.factories import add_member, make_project, make_user, make_world
from tests.support.jobs import seed
from tests.support.runtime import TEST_QUEUE, start_worker, stop_worker, worker_env

celery_app.conf.task_default_queue = TEST_QUEUE

# Password hashing is deliberately slow; tests create many users and need no protection against brute force.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A test that takes one of these starts a real Celery worker or a live server (and a browser): it waits seconds on
# other processes rather than computing. Tests that start such processes themselves carry the marker in their module.
SLOW_FIXTURES = {"celery_worker_process", "live_server"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def lead(db):
    return make_user("lead")


@pytest.fixture
def annotator(db):
    return make_user("annotator")


@pytest.fixture
def outsider(db):
    """An annotator of another project."""
    return make_user("outsider")


@pytest.fixture
def project(lead, annotator, outsider):
    project = make_project(lead=lead, name="Sentiment")
    add_member(project, annotator)
    other = make_project(lead=make_user("other-lead"), name="Other")
    add_member(other, outsider)
    return project


@pytest.fixture
def world(project, lead):
    """One of everything a URL can point at, in the visited project (for tests/support/visits.py: fill)."""
    return make_world(project=project, lead=lead)


@pytest.fixture
def celery_worker_process(transactional_db):
    """A real Celery worker process on the configured broker, consuming this test process's queue, on the test database.

    Tasks sent from the test (``.delay`` / ``delay_on_commit``) reach it. It sees committed rows only, hence
    ``transactional_db``.
    """
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue=TEST_QUEUE, durable=True, auto_delete=False)
        conn.default_channel.queue_purge(TEST_QUEUE)
    proc = start_worker(queue=TEST_QUEUE, env=worker_env())
    try:
        yield proc
    finally:
        output = stop_worker(proc)
        if "Traceback" in output:
            print(output)


@pytest.fixture
def llm_server():
    """A loopback OpenAI-compatible server (tests/support/llm_server.py) with fast rate-limit retries; faults via
    ``queue_faults`` / ``configure``."""
    from tests.support.llm_server import LLMServer

    with LLMServer(seed=7, retry_after=0.05) as server:
        yield server


@pytest.fixture
def llm(llm_server, settings, monkeypatch):
    """The loopback server as the deployment's default OpenAI endpoint (not probed: OpenAI is assumed), with a key, a
    short timeout and few retries."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings.OPENAI_BASE_URL = llm_server.base_url
    settings.OPENAI_TIMEOUT = 5
    settings.OPENAI_MAX_RETRIES = 3
    return llm_server


@pytest.fixture
def seeded(project):
    """The project with accepted, imported examples of each label (tests/support/jobs.py TEXTS) for jobs to show."""
    seed(project)
    return project
