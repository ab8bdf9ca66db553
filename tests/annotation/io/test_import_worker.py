"""A real Celery worker killed with SIGKILL in the middle of an upload's import: the job does not stay "running" for
ever; the next read of its page marks it failed with a clear message, and nothing of it is stored.

The worker runs the solo pool, so the task runs in the process that is killed (a prefork pool process may outlive its
parent). The import task is not ``acks_late``, so the killed run is not delivered again.
"""
import signal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from django.urls import reverse

from annotation.io import importing
from annotation.models import ImportJob, Item
from synthstudio.celery import app as celery_app
from tests.support.runtime import TEST_QUEUE, start_worker, stop_worker, wait_for, worker_env

pytestmark = pytest.mark.slow


@pytest.fixture
def solo_worker(transactional_db):
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue=TEST_QUEUE, durable=True, auto_delete=False)
        conn.default_channel.queue_purge(TEST_QUEUE)
    proc = start_worker(queue=TEST_QUEUE, env=worker_env(), concurrency=1, pool="solo")
    try:
        yield proc
    finally:
        stop_worker(proc)


@pytest.fixture
def as_lead(client, lead, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    client.force_login(lead)
    return client


def upload(client, project, rows: int) -> ImportJob:
    body = "text\n" + "".join(f"sentence number {i}\n" for i in range(rows))
    response = client.post(reverse("import", args=[project.id]), {
        "file": SimpleUploadedFile("big.csv", body.encode(), content_type="text/csv"), "text_column": "text",
        "duplicates": "skip"})
    assert response.status_code == 302
    return ImportJob.objects.get(project=project)


def reaped_page(client, project, job) -> str:
    """The job page, once a read of it finds the job failed (PostgreSQL ends a dead client's session, and with it
    the run's lock, a moment after the process dies)."""
    url = reverse("import_detail", args=[project.id, job.id])

    def page_if_reaped() -> str:
        page = client.get(url).content.decode()
        return page if importing.WORKER_LOST in page else ""

    return wait_for(page_if_reaped, what="the killed import is marked failed")


def assert_reaped(job, upload_file):
    job.refresh_from_db()
    assert (job.state, job.errors) == ("failed", [{"row": None, "field": "", "message": importing.WORKER_LOST}])
    assert not Item.objects.filter(project=job.project).exists()
    assert not upload_file.exists()


def kill(worker):
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def test_a_worker_killed_while_validating_leaves_a_failed_job_and_nothing_stored(solo_worker, as_lead, project):
    job = upload(as_lead, project, rows=300_000)
    upload_file = importing.upload_path(job)
    # Validation reports its progress every PROGRESS_EVERY rows: once it has, the worker is mid-file.
    wait_for(lambda: ImportJob.objects.filter(pk=job.pk, state="validating",
                                              rows_total__gte=importing.PROGRESS_EVERY).exists(),
             what="the worker validates the upload")
    kill(solo_worker)
    assert "stopped; nothing was stored" in reaped_page(as_lead, project, job)
    assert_reaped(job, upload_file)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="holds the item table's lock from a second connection")
def test_a_worker_killed_inside_its_write_transaction_stores_nothing(solo_worker, as_lead, project):
    # The worker's first COPY waits behind this lock, inside its transaction, where it is killed.
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    try:
        with blocker.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {Item._meta.db_table} IN SHARE MODE")
        job = upload(as_lead, project, rows=50)
        upload_file = importing.upload_path(job)

        def writing_and_waiting() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                               "WHERE c.relname = %s AND NOT l.granted", [Item._meta.db_table])
                waiting = cursor.fetchone()[0]
            return waiting and ImportJob.objects.filter(pk=job.pk, state="importing").exists()

        wait_for(writing_and_waiting, what="the worker's write waits for the table lock")
        kill(solo_worker)
    finally:
        blocker.rollback()
        blocker.close()
    reaped_page(as_lead, project, job)
    assert_reaped(job, upload_file)
