"""Hand-written SQL where the ORM is too slow, and the one module where PostgreSQL and SQLite get different code.

Each function makes the decision for both databases itself, so no caller asks which database it runs on, and each is
tested on both (``tests/system/test_sql.py``, run once as it is and once with ``DATABASE_URL=postgres://...``). What
justifies the SQL (``bench/RESULTS.md``): ``rows_update`` replaces ``bulk_update``, which builds a CASE per row and
field (over 5 minutes for 40,000 rows); ``rows_insert`` uses COPY on PostgreSQL (an import of 1M rows at 11-22k
rows/s); ``rows_formatted`` lets PostgreSQL format an export inside COPY (1M rows in 2.3-2.8x the time of a bare
COPY). The queue's hot queries are compiled once per process in ``synthstudio/lib/prepared.py``, the same
SQL on both databases.

Nothing here knows the app's models: callers pass the model or the queryset.
"""
import codecs
import fcntl
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone


def _postgres() -> bool:
    return connection.vendor == "postgresql"


# --- UPDATE ... FROM (VALUES ...) ------------------------------------------------------------------------------------

def rows_update(*, model: type[Model], objs: list[Model], fields: list[str], where: str = "",
                where_params: list | None = None) -> int:
    """Write ``fields`` of every object in ``objs`` (by primary key) in one statement; the number of rows written.
    ``rows_write`` with the objects' values."""
    names = [model._meta.get_field(name).attname for name in fields]
    return rows_write(model=model, fields=fields, rows=[(obj.pk, *(getattr(obj, n) for n in names)) for obj in objs],
                      where=where, where_params=where_params)


def rows_write(*, model: type[Model], fields: list[str], rows: list[tuple], match: tuple[str, ...] = (),
               where: str = "", where_params: list | None = None, changed_only: bool = False) -> int:
    """Write ``fields`` of many rows of ``model`` in one statement; the number of rows written. Each row is a tuple:
    the primary key, the values of ``fields`` (Python values, as the model holds them), then the values of ``match``,
    columns that are compared instead of written (a row whose ``version`` moved meanwhile is left alone).

    PostgreSQL gets one array per column (``UPDATE ... FROM unnest(%s::bigint[], ...)``): a handful of parameters
    whatever the number of rows, where a ``VALUES`` list of 2,000 rows made the driver split a query of 12,000
    placeholders in Python (a third of a scoring round's time at 100k items). SQLite (3.33+) gets ``UPDATE ... FROM
    (VALUES ...)``. ``where`` adds a condition on the table's rows (``{t}`` stands for the quoted table name), with
    ``where_params``: on PostgreSQL it is checked again on a row that a concurrent transaction changed, once that one
    commits. ``changed_only`` leaves alone rows whose fields already hold the values (no new row version, no index
    entries: a round's routing rewrites a reason only where it changed).
    """
    if not rows:
        return 0
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk = model._meta.pk
    written = [model._meta.get_field(name) for name in fields]
    compared = [model._meta.get_field(name) for name in match]
    columns = [pk, *written, *compared]
    names = [quote(f.column) for f in columns]
    sets = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in written)
    conditions = [f"{table}.{names[0]} = v.{names[0]}"]
    conditions += [f"{table}.{quote(f.column)} = v.{quote(f.column)}" for f in compared]
    if where:
        conditions.append(where.format(t=table))
    if changed_only:
        distinct = "IS DISTINCT FROM" if _postgres() else "IS NOT"
        conditions.append("(" + " OR ".join(f"{table}.{quote(f.column)} {distinct} v.{quote(f.column)}"
                                            for f in written) + ")")
    if _postgres():
        return _postgres_write(table=table, columns=columns, written=written, sets=sets, conditions=conditions,
                               rows=rows, where_params=where_params or [])
    params = []
    for row in rows:
        params.append(row[0])
        params.extend(f.get_db_prep_save(value, connection) for f, value in zip(columns[1:], row[1:], strict=True))
    values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
    sql = (f"WITH v({', '.join(names)}) AS (VALUES {values}) "
           f"UPDATE {table} SET {sets} FROM v WHERE {' AND '.join(conditions)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *(where_params or [])])
        # Python's sqlite3 reports -1 for a statement that starts with WITH; SQLite itself counts the rows.
        cursor.execute("SELECT changes()")
        return cursor.fetchone()[0]


def _postgres_write(*, table: str, columns: list, written: list, sets: str, conditions: list[str], rows: list[tuple],
                    where_params: list) -> int:
    """The rows go by COPY into a temporary table of the connection (psycopg formats COPY rows in C), then one UPDATE
    reads them: a ``VALUES`` list of 2,000 rows made the driver split a query of 12,000 placeholders in Python, and
    array parameters made it escape every element in Python (each about a third of a scoring round at 100k items)."""
    quote = connection.ops.quote_name
    names = [quote(f.column) for f in columns]
    types = [f.db_type(connection) for f in columns]
    scratch = quote("rows_write_" + hashlib.sha1(f"{table}{names}{types}".encode()).hexdigest()[:16])
    prepared = []
    for row in rows:
        values = [row[0]]
        for f, value in zip(columns[1:], row[1:], strict=True):
            if value is not None and f.get_internal_type() == "JSONField":
                value = json.dumps(value, cls=f.encoder)
            elif f in written:
                value = f.get_db_prep_save(value, connection)
            values.append(value)
        prepared.append(values)
    with transaction.atomic(), connection.cursor() as cursor:
        # ON COMMIT DELETE ROWS and the TRUNCATE: the table is empty whenever a call starts, in or out of a caller's
        # transaction; created once per connection.
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {scratch} "
                       f"({', '.join(f'{n} {t}' for n, t in zip(names, types, strict=True))}) ON COMMIT DELETE ROWS")
        cursor.execute(f"TRUNCATE {scratch}")
        with cursor.copy(f"COPY {scratch} ({', '.join(names)}) FROM STDIN") as copy:
            for values in prepared:
                copy.write_row(values)
        cursor.execute(f"UPDATE {table} SET {sets} FROM {scratch} v WHERE {' AND '.join(conditions)}", where_params)
        count = cursor.rowcount
        cursor.execute(f"TRUNCATE {scratch}")
    return count


# --- Bulk insert -----------------------------------------------------------------------------------------------------

def rows_insert(*, model: type[Model], rows: list[dict], constant: dict) -> int:
    """Insert one row per dict of ``rows`` (field attname -> value, the same keys in each), with ``constant`` values
    shared by all; returns the count. Every concrete field but an automatic primary key is written: from the row,
    else ``constant``, else the field's default; ``auto_now``/``auto_now_add`` fields get the time of the insert, as
    Django gives them.

    PostgreSQL: ``COPY FROM STDIN`` in text format, several times faster than INSERT. Elsewhere ``bulk_create``.
    """
    if not rows:
        return 0
    if _postgres():
        _CopyIn(model, varying=rows[0].keys(), constant=constant).copy(rows)
    else:
        model.objects.bulk_create([model(**{**constant, **values}) for values in rows])
    return len(rows)


_COPY_NULL = "\\N"


def _copy_escape(text: str) -> str:
    """COPY text format: backslash, newline, carriage return and tab are written as backslash escapes."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _copy_formatter(field) -> Callable:
    """value -> its COPY text for one model field; lists of strings (labels) repeat, so their JSON is cached."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        cache: dict = {}

        def as_json(value):
            if value is None:
                return _COPY_NULL
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                key = tuple(value)
                if key not in cache:
                    cache[key] = _copy_escape(json.dumps(value, ensure_ascii=False))
                return cache[key]
            return _copy_escape(json.dumps(value, ensure_ascii=False, cls=field.encoder))
        return as_json
    if kind == "BooleanField":
        return lambda v: _COPY_NULL if v is None else ("t" if v else "f")
    if kind == "DateTimeField":
        return lambda v: _COPY_NULL if v is None else v.isoformat()
    return lambda v: _COPY_NULL if v is None else _copy_escape(str(v))


class _CopyIn:
    def __init__(self, model: type[Model], *, varying, constant: dict):
        varying = set(varying)
        pk = model._meta.pk
        self.fields = [f for f in model._meta.concrete_fields
                       if not (f is pk and f.attname not in varying and f.get_internal_type().endswith("AutoField"))]
        self.template = [self._fixed(f, constant) for f in self.fields]
        self.varying = [(i, f.attname, _copy_formatter(f)) for i, f in enumerate(self.fields) if f.attname in varying]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in self.fields)
        self.sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"

    @staticmethod
    def _fixed(field, constant: dict) -> str:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = timezone.now()
        elif field.attname in constant:
            value = constant[field.attname]
        else:
            value = field.get_default()
        return _copy_formatter(field)(value)

    def copy(self, rows: list[dict]) -> None:
        lines = []
        for values in rows:
            out = self.template.copy()
            for i, name, fmt in self.varying:
                out[i] = fmt(values[name])
            lines.append("\t".join(out))
        lines.append("")
        # The raw psycopg cursor does COPY; Django's wrapper turns its errors into django.db ones (IntegrityError...).
        with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(self.sql) as copy:
            copy.write("\n".join(lines))


# --- Export formatted by the database --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CopySelect:
    """What PostgreSQL formats itself: one text column per output line (``rows``), the options of
    ``COPY (...) TO STDOUT WITH (...)``, and a header written before the rows."""

    rows: QuerySet
    options: str
    header: str = ""


def rows_formatted(*, copy: Callable[[], CopySelect], stream: Callable[[], Iterator[str]]) -> Iterator[str]:
    """The text of an export: on PostgreSQL the database formats the rows of ``copy()`` inside one
    ``COPY ... TO STDOUT`` and Python only passes the bytes on; elsewhere ``stream()`` writes them in Python."""
    if not _postgres():
        return stream()
    return _copy_out(copy())


def _copy_out(select: CopySelect) -> Iterator[str]:
    query = connection.ops.compose_sql(*select.rows.query.sql_with_params())
    yield select.header
    decoder = codecs.getincrementaldecoder("utf-8")()
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({query}) TO STDOUT WITH ({select.options})") as copy:
        for block in copy:
            yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


# --- Planner statistics ----------------------------------------------------------------------------------------------

def statistics_refresh(*, model: type[Model]) -> None:
    """Refresh PostgreSQL's planner statistics of the model's table (after a bulk load). SQLite keeps none unless
    ANALYZE was run once, and plans by its indexes alone, so there is nothing to refresh."""
    if _postgres():
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


# --- Writes visible before this transaction commits -----------------------------------------------------------------

@contextmanager
def side_writer(*, model: type[Model], pk: int, field: str) -> Iterator[Callable[[object], None]]:
    """A function that sets one field of one row at once, visible to others while this connection's transaction is
    still open (a progress counter during a long write).

    PostgreSQL: through a second connection, skipping the row instead of waiting when it is locked (best effort, never
    a deadlock). SQLite has one writer at a time, so a second connection could only wait for this one: the writes
    are dropped there.
    """
    if not _postgres():
        yield lambda value: None
        return
    side = connections.create_connection("default")
    table = side.ops.quote_name(model._meta.db_table)
    key, column = side.ops.quote_name(model._meta.pk.column), side.ops.quote_name(model._meta.get_field(field).column)

    def write(value) -> None:
        with side.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {key} = "
                           f"(SELECT {key} FROM {table} WHERE {key} = %s FOR UPDATE SKIP LOCKED)", [value, pk])
    try:
        yield write
    finally:
        side.close()


# --- Locks that die with their process -------------------------------------------------------------------------------

@contextmanager
def process_lock(*, name: str, key: int) -> Iterator[bool]:
    """Try to take the lock ``(name, key)`` without waiting; yields whether this process got it and releases it on
    exit. The lock also ends when its process dies, however it dies: a job's runner holds it for the whole run, so a
    running job whose lock nobody holds (``process_lock_held``) has lost its runner.

    PostgreSQL: a session advisory lock on a connection of its own, which ends with the process whichever machine it
    runs on (Django's own connection may be closed and reopened during a job). SQLite, whose processes all share one
    machine: ``flock`` on a file under ``SYNTHSTUDIO_VAR_DIR/locks/``, a folder per database file; the kernel drops
    the lock when the process's files close.
    """
    if _postgres():
        own = connections.create_connection("default")
        space, held = _lock_space(name), False
        try:
            with own.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [space, key])
                held = cursor.fetchone()[0]
            yield held
        finally:
            try:
                if held:  # at once: the server ends a closed session's locks only when it gets to it
                    with own.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [space, key])
            finally:
                own.close()
        return
    path = _lock_path(name, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not _flock(fd):
            yield False
            return
        try:
            yield True
        finally:
            # Keys are never reused (a job runs once), so the file may go while locked: whoever opened it meanwhile
            # finds it free only once the job has ended, when there is nothing left to decide.
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def process_lock_held(*, name: str, key: int) -> bool:
    """Whether a live process holds the lock ``(name, key)`` (see ``process_lock``); takes it for an instant to see."""
    if _postgres():
        space = _lock_space(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT CASE WHEN pg_try_advisory_lock(%s, %s) THEN NOT pg_advisory_unlock(%s, %s) "
                           "ELSE true END", [space, key, space, key])
            return cursor.fetchone()[0]
    path = _lock_path(name, key)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if not _flock(fd):
            return True
        path.unlink(missing_ok=True)  # its holder died without removing it
        return False
    finally:
        os.close(fd)


def _lock_space(name: str) -> int:
    """The first of the two int4 keys of a PostgreSQL advisory lock: the name's CRC-32, as a signed int4."""
    return zlib.crc32(name.encode()) - 2**31


def _lock_path(name: str, key: int) -> Path:
    database = hashlib.sha256(str(connection.settings_dict["NAME"]).encode()).hexdigest()[:16]
    return Path(settings.VAR_DIR) / "locks" / database / f"{name}-{key}.lock"


def _flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
