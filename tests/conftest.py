"""Shared fixtures: the four visitors (lead, annotator, outsider, anonymous), a project, and real service helpers."""
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from synthstudio.celery import app as celery_app
from tests.factories import add_member, make_project, make_user

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"

# Tasks sent by this test process go to a queue of its own, so a developer's running worker (or another test process
# on the same broker) never takes them. Set before anything is sent: Celery caches its queue table on first use.
TEST_QUEUE = f"pytest-{uuid.uuid4().hex[:10]}"
celery_app.conf.task_default_queue = TEST_QUEUE

# Password hashing is deliberately slow; tests create many users and need no protection against brute force.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def require(condition: bool, what: str):
    """Skip a test whose outside part (browser, server) is missing, except in CI, where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available here")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


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
def client_for(client):
    """client_for(user) -> a test client logged in as user (None: anonymous)."""

    def login(user):
        if user is not None:
            client.force_login(user)
        return client

    return login


def database_url() -> str:
    """The URL of the test database this process uses, for worker processes that must see the same rows."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url(), "PYTHONPATH": str(REPO)}, **extra)
    return env


def start_worker(*, queue: str, env: dict, concurrency: int = 2, pool: str = "prefork") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "synthstudio", "worker", "-Q", queue, "-c", str(concurrency),
         "-P", pool, "--loglevel", "WARNING", "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop_worker(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


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
    """A loopback OpenAI-compatible server (tests/llm_server.py) with fast rate-limit retries; faults via
    ``queue_faults`` / ``configure``."""
    from tests.llm_server import LLMServer

    with LLMServer(seed=7, retry_after=0.05) as server:
        yield server
