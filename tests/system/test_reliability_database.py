"""The database going away in the middle of a request or a task: an error, and no half-written rows.

PostgreSQL: the server ends the connection (``pg_terminate_backend`` from another connection) between two statements
of one transaction. SQLite has no connection to lose; its real failure is a writer that cannot get the lock
("database is locked"), which these tests cause with another connection holding the write lock.
"""
import sqlite3
from contextlib import contextmanager

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, connection
from django.test import Client
from django.urls import reverse

from annotation.models import Item, Review, Source, Status
from annotation.queue import services as queue
from generation import services
from generation.models import GenerationBatch, JobMode, JobStatus
from tests.support.factories import make_item


def kill_my_connection() -> None:
    """Have the server end this thread's PostgreSQL connection, as a restart or failover would."""
    pid = connection.connection.info.backend_pid
    s = connection.settings_dict
    with psycopg.connect(dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"] or None,
                         host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@contextmanager
def write_lock_held_elsewhere():
    """Another process's connection holds SQLite's write lock; ours gives up after 0.2 s instead of 20."""
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    options = connection.settings_dict["OPTIONS"]
    timeout = options.get("timeout")
    connection.close()
    options["timeout"] = 0.2
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()
        options["timeout"] = timeout
        connection.close()


@pytest.fixture
def reviewing(transactional_db, project, annotator):
    item = make_item(project, "A film I liked a lot.")
    claimed = queue.queue_claim(project=project, user=annotator)
    assert claimed.pk == item.pk
    client = Client(raise_request_exception=False)
    client.force_login(annotator)
    return project, item, client


def accept(client, project, item):
    return client.post(reverse("queue_review", args=[project.id, item.id]),
                       {"action": "accept", "version": item.version, "labels": ["positive"]})


def test_a_review_whose_connection_drops_mid_transaction_writes_nothing(reviewing, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("a dropped connection is a PostgreSQL fault; SQLite's is the lock test below")
    project, item, client = reviewing
    real = queue.item_transition

    def dropped(**kwargs):
        kill_my_connection()  # after the claim's UPDATE, before the status change and its Review
        return real(**kwargs)

    monkeypatch.setattr(queue, "item_transition", dropped)
    response = accept(client, project, item)
    assert response.status_code == 500
    connection.close()
    fresh = Item.objects.get(pk=item.pk)
    assert (fresh.status, fresh.version, fresh.review_count) == (Status.NEEDS_REVIEW, item.version, 0)
    assert Review.objects.filter(item=item).count() == 0
    monkeypatch.setattr(queue, "item_transition", real)
    assert accept(client, project, item).status_code == 302  # the same form, sent again, now goes through
    assert Item.objects.get(pk=item.pk).status == Status.ACCEPTED


def test_a_review_that_cannot_get_the_write_lock_writes_nothing(reviewing):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's file lock")
    project, item, client = reviewing
    with write_lock_held_elsewhere():
        response = accept(client, project, item)
    assert response.status_code == 500
    fresh = Item.objects.get(pk=item.pk)
    assert (fresh.status, fresh.version, fresh.review_count) == (Status.NEEDS_REVIEW, item.version, 0)
    assert Review.objects.filter(item=item).count() == 0
    assert accept(client, project, item).status_code == 302


def test_a_generation_batch_interrupted_by_the_database_is_stored_once_when_the_task_retries(
        transactional_db, project, lead, monkeypatch):
    for label, text in (("positive", "A wonderful film with a brilliant cast."),
                        ("negative", "A boring, dull mess with awful dialogue.")):
        make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=[label], source=Source.IMPORTED)
    job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="offline",
                              options={"count": 12, "samples_per_request": 2, "requests_per_batch": 2,
                                       "filters": {"leakage_words": 0, "near_duplicate": 1.0}}, enqueue=False)
    real = services._store_items
    calls = []

    def interrupted(**kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second batch: its items are inserted, then the database goes away
            real(**kwargs)
            if connection.vendor == "postgresql":
                kill_my_connection()
                return real(**kwargs)
            raise OperationalError("database is locked")
        return real(**kwargs)

    monkeypatch.setattr(services, "_store_items", interrupted)
    with pytest.raises((OperationalError, InterfaceError)):
        services.job_run(job_id=job.id, token="task-1")  # the Celery task autoretries on these two
    connection.close()
    assert GenerationBatch.objects.filter(job=job, done=True).count() == 1
    first = GenerationBatch.objects.get(job=job, index=0).outcome
    assert Item.objects.filter(generation_job_id=job.id).count() == first["produced"] + first["filtered"]

    services.job_run(job_id=job.id, token="task-1")  # the retry: same task id, resumes at batch 1
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.produced + job.filtered + job.failed == job.requested == 12
    keys = list(Item.objects.filter(generation_job_id=job.id).values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys)) == job.produced + job.filtered
