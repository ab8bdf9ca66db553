"""The hand-written SQL and its vendor forks (synthstudio/lib/sql.py), each on the database the suite runs on.

Run it twice, as it is (SQLite) and with ``DATABASE_URL=postgres://...``: every function takes a different branch on
each, and both branches must keep the same promise.
"""
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, connections, transaction

from annotation.models import ImportJob, Item, Status
from synthstudio.lib import sql
from tests.support.factories import make_item
from tests.support.runtime import REPO, wait_for, worker_env

pytestmark = pytest.mark.django_db

POSTGRES = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's own behaviour")


def test_rows_update_writes_the_named_fields_of_each_row_and_nothing_else(project):
    first, second, other = make_item(project, "one"), make_item(project, "two"), make_item(project, "three")
    moment = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    changed = [
        Item(pk=first.pk, model_scores={"p": [0.25, None], "tab\tand\nnewline": "\\"}, ambiguity=0.5, is_audit=True,
             model_label="negative", status=Status.NEEDS_REVIEW, updated_at=moment),
        Item(pk=second.pk, model_scores={}, ambiguity=None, is_audit=False, model_label="", status=Status.PROPOSED,
             updated_at=moment),
    ]
    sql.rows_update(model=Item, objs=changed, fields=["model_scores", "ambiguity", "is_audit", "model_label", "status",
                                                      "updated_at"])
    a, b, c = (Item.objects.get(pk=i.pk) for i in (first, second, other))
    assert (a.model_scores, a.ambiguity, a.is_audit, a.model_label, a.status, a.updated_at) == (
        {"p": [0.25, None], "tab\tand\nnewline": "\\"}, 0.5, True, "negative", Status.NEEDS_REVIEW, moment)
    assert (b.model_scores, b.ambiguity, b.is_audit, b.model_label, b.status) == ({}, None, False, "", Status.PROPOSED)
    assert (a.text, b.text, a.version) == ("one", "two", first.version)
    assert (c.model_scores, c.status, c.updated_at) == (other.model_scores, other.status, other.updated_at)
    sql.rows_update(model=Item, objs=[], fields=["ambiguity"])  # nothing to write is not an error


def test_rows_write_compares_match_columns_checks_the_condition_and_can_skip_unchanged_rows(project):
    one, two, three = (make_item(project, text, status=Status.PROPOSED) for text in ("one", "two", "three"))
    Item.objects.filter(pk=two.pk).update(version=two.version + 1)  # changed since it was read
    rows = [(item.pk, "why " + item.text, {"p": 0.5}, item.version) for item in (one, two, three)]
    written = sql.rows_write(model=Item, fields=["route_reason", "model_scores"], rows=rows, match=("version",),
                             where="{t}.text <> %s", where_params=["three"])
    assert written == 1
    assert [Item.objects.get(pk=i.pk).route_reason for i in (one, two, three)] == ["why one", "", ""]
    # Already holding the values: not written again, and not counted.
    assert sql.rows_write(model=Item, fields=["route_reason", "model_scores"], rows=rows[:1], match=("version",),
                          changed_only=True) == 0
    assert sql.rows_write(model=Item, fields=["route_reason"], rows=[(one.pk, "why not", one.version)],
                          match=("version",), changed_only=True) == 1
    assert sql.rows_write(model=Item, fields=["ambiguity"], rows=[]) == 0


def test_rows_insert_writes_rows_constants_and_defaults(project):
    rows = [
        {"text": "tab\there, newline\nthere, back\\slash, quote \" and 😀", "extra": {"k": ["\\N", None, 1.5]},
         "proposed_labels": ["positive"], "final_labels": [], "llm_confidence": None, "content_hash": "a" * 64},
        {"text": "\\N", "extra": {}, "proposed_labels": ["positive"], "final_labels": ["negative"],
         "llm_confidence": 0.25, "content_hash": "b" * 64},
    ]
    assert sql.rows_insert(model=Item, rows=rows, constant={"project_id": project.pk, "status": Status.ACCEPTED}) == 2
    assert sql.rows_insert(model=Item, rows=[], constant={}) == 0
    stored = list(Item.objects.filter(project=project).order_by("id"))
    assert [{name: getattr(item, name) for name in rows[0]} for item in stored] == rows
    first = stored[0]
    assert first.status == Status.ACCEPTED and first.version == Item._meta.get_field("version").default
    assert first.created_at is not None and first.updated_at is not None and first.provenance == {}


def test_rows_insert_refuses_what_the_database_refuses(project):
    row = {"text": "x", "content_hash": "c" * 64, "idempotency_key": "same"}
    sql.rows_insert(model=Item, rows=[row], constant={"project_id": project.pk})
    with pytest.raises(IntegrityError), transaction.atomic():
        sql.rows_insert(model=Item, rows=[row], constant={"project_id": project.pk})


def test_rows_formatted_lets_postgresql_format_and_streams_elsewhere(project):
    make_item(project, "hello")
    asked = []

    def copy():
        asked.append("copy")
        return sql.CopySelect(rows=Item.objects.filter(project=project).values_list("text"), options="FORMAT csv",
                              header="text\n")

    def stream():
        asked.append("stream")
        yield "streamed\n"

    out = "".join(sql.rows_formatted(copy=copy, stream=stream))
    if connection.vendor == "postgresql":
        assert (asked, out) == (["copy"], "text\nhello\n")
    else:
        assert (asked, out) == (["stream"], "streamed\n")


def test_statistics_refresh_analyzes_the_table_on_postgresql_only(project):
    for i in range(5):
        make_item(project, f"row {i}")
    sql.statistics_refresh(model=Item)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # ANALYZE sets the table's row estimate (the rows of this open transaction count).
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [Item._meta.db_table])
            assert cursor.fetchone()[0] >= 5
        else:
            cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
            assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_side_writer_is_seen_by_others_before_the_commit_on_postgresql(project, lead):
    job = ImportJob.objects.create(project=project, created_by=lead, file_name="x.csv", format="csv")
    other = connections.create_connection("default")
    try:
        with transaction.atomic(), sql.side_writer(model=ImportJob, pk=job.pk, field="rows_done") as write:
            make_item(project, "written in the open transaction")
            write(42)
            with other.cursor() as cursor:
                cursor.execute(f"SELECT rows_done FROM {ImportJob._meta.db_table} WHERE id = %s", [job.pk])
                seen = cursor.fetchone()[0]
    finally:
        other.close()
    # SQLite has one writer at a time: a second connection could only wait for this transaction, so nothing is written.
    assert seen == (42 if connection.vendor == "postgresql" else 0)


@POSTGRES
@pytest.mark.django_db(transaction=True)
def test_side_writer_skips_a_locked_row_instead_of_waiting(project, lead):
    job = ImportJob.objects.create(project=project, created_by=lead, file_name="x.csv", format="csv")
    with transaction.atomic(), sql.side_writer(model=ImportJob, pk=job.pk, field="rows_done") as write:
        ImportJob.objects.filter(pk=job.pk).update(rows_done=7)  # this transaction now holds the row's lock
        write(42)
    job.refresh_from_db()
    assert job.rows_done == 7


def test_a_process_lock_has_one_holder_at_a_time():
    assert not sql.process_lock_held(name="test", key=1)
    with sql.process_lock(name="test", key=1) as held:
        assert held and sql.process_lock_held(name="test", key=1)
        with sql.process_lock(name="test", key=1) as again:
            assert not again
        assert not sql.process_lock_held(name="test", key=2)
        assert sql.process_lock_held(name="test", key=1)
    assert not sql.process_lock_held(name="test", key=1)
    with sql.process_lock(name="test", key=1) as held:
        assert held


HOLDER = """
import sys, time, django
django.setup()
from synthstudio.lib import sql
with sql.process_lock(name="test", key=int(sys.argv[1])) as held:
    print(held, flush=True)
    time.sleep(3600)
"""


@pytest.mark.django_db(transaction=True)
def test_a_process_lock_ends_when_its_process_is_killed():
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "77"], cwd=REPO, env=worker_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert sql.process_lock_held(name="test", key=77)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # SQLite: the kernel dropped the flock with the process. PostgreSQL ends the dead client's session (and its
        # advisory lock) once it reads the closed socket, a moment later.
        wait_for(lambda: not sql.process_lock_held(name="test", key=77), what="the lock of a killed process ends")
    finally:
        holder.kill()
        holder.wait()
