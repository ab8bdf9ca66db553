"""Export a project's items as CSV or JSONL, streamed so memory stays flat at any size.

Columns: ``id, text, labels, status, source``; with provenance also ``created_at, job_id, conditions, model,
llm_confidence, model_label, ambiguity, scores, reviewer, review_action, reviewed_at``. ``labels`` are the item's
final labels if a person decided, else the LLM's proposal. ``reviewer``/``review_action`` come from the item's last
Review row (loaded once per batch, not per item).

CSV: one header row, UTF-8 without BOM, RFC 4180 quoting, lines ending in LF. Several labels share one cell joined
with ``|`` (see ``annotation.io.importing.join_labels``; label names cannot contain ``|``). Cells a spreadsheet would run
as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) get a leading ``'``, and so does a cell that already
starts with ``'`` before one of those, so the importer can undo it exactly. Nested values (conditions, scores) are
JSON text.

JSONL: one object per line, ``labels`` a list, nested values (conditions, scores) JSON text so every line has the same
column types (what pandas and the ``datasets`` JSON loader need). No formula protection: JSON is not opened by
spreadsheets.

Elsewhere, and with provenance, rows are read in keyset batches of ``BATCH``. On PostgreSQL the base columns are
formatted by the database in one ``COPY ... TO STDOUT`` by the same rules (``_postgres_copy``); Python only passes the
bytes on, so an export costs little more than the COPY itself. The test suite runs on both databases, so both paths
meet the same tests (formula protection, label cells, round trip).
"""
import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.db import connection
from django.db.models import JSONField, Max
from django.db.models.expressions import RawSQL
from django.utils import timezone

from annotation.io.importing import join_labels
from annotation.models import Item, Project, Review

BATCH = 5000
BASE_COLUMNS = ["id", "text", "labels", "status", "source"]
PROVENANCE_COLUMNS = ["created_at", "job_id", "conditions", "model", "llm_confidence", "model_label", "ambiguity",
                      "scores", "reviewer", "review_action", "reviewed_at"]
_BASE_FIELDS = ["id", "text", "final_labels", "proposed_labels", "status", "source"]
_PROVENANCE_FIELDS = ["created_at", "generation_job_id", "provenance", "llm_confidence", "model_label", "ambiguity",
                      "model_scores", "reviewed_at"]
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_FORMULA_FIRST = frozenset("'=+-@\t\r")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}


@dataclass(frozen=True)
class ExportFilters:
    statuses: tuple[str, ...] = ()
    source: str = ""
    label: str = ""
    created_from: date | None = None
    created_to: date | None = None


def neutralise(cell: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would evaluate (OWASP CSV injection); reversible, see the docstring."""
    if cell and cell[0] in _FORMULA_FIRST and _FORMULA.match(cell):
        return "'" + cell
    return cell


def export_queryset(*, project: Project, filters: ExportFilters):
    qs = Item.objects.filter(project=project, archived_at__isnull=True)
    if filters.statuses:
        qs = qs.filter(status__in=filters.statuses)
    if filters.source:
        qs = qs.filter(source=filters.source)
    tz = timezone.get_current_timezone()
    if filters.created_from:
        qs = qs.filter(created_at__gte=datetime.combine(filters.created_from, time.min, tzinfo=tz))
    if filters.created_to:
        qs = qs.filter(created_at__lt=datetime.combine(filters.created_to + timedelta(days=1), time.min, tzinfo=tz))
    return qs


def export_count(*, project: Project, filters: ExportFilters) -> int | None:
    """How many items the filters select; None with a label filter, which is applied while streaming."""
    if filters.label:
        return None
    return export_queryset(project=project, filters=filters).count()


def export_records(*, project: Project, filters: ExportFilters, provenance: bool = False) -> Iterator[list[tuple]]:
    """Batches of ``(id, text, labels, status, source[, provenance values...])``, read by id ranges.

    The SQL is Django's, but rows are read from the cursor directly: Django's per-value converters (a JSON decode per
    label column, a datetime parse) cost more than PostgreSQL takes to produce the rows. Label columns are decoded once
    per distinct value instead (a project has few label combinations); see ``_LabelCells``.
    """
    fields = _BASE_FIELDS + (_PROVENANCE_FIELDS if provenance else [])
    # Served by item_project_id (project_id, id), or item_project_status_id with a status filter:
    # WHERE project_id = ? [AND status IN (...)] AND id > ? ORDER BY id LIMIT ?.
    qs = export_queryset(project=project, filters=filters).order_by("id").values_list(*fields)
    cells, iso, label, last = _LabelCells(), _iso_reader(), filters.label, 0
    get = cells.get
    while True:
        sql, params = qs.filter(id__gt=last)[:BATCH].query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not rows:
            return
        last = rows[-1][0]
        out = [(r[0], r[1], get(r[2], r[3]), r[4], r[5]) for r in rows]
        if provenance:
            reviews = _last_reviews(project, rows[0][0], last)
            out = [base + _provenance(r, reviews, iso) for base, r in zip(out, rows, strict=True)]
        if label:
            out = [r for r in out if label in r[2].names]
        if out:
            yield out


def _provenance(r: tuple, reviews: dict, iso) -> tuple:
    prov = _json(r[8]) or {}
    reviewer, action = reviews.get(r[0], ("", ""))
    return (iso(r[6]), r[7], prov.get("conditions"), prov.get("model") or prov.get("model_name") or "", r[9], r[10],
            r[11], _json(r[12]), reviewer, action, iso(r[13]))


class _LabelCells:
    """An item's labels (final if any, else proposed) in each form an export writes, cached by the raw column values
    (JSON text on every backend Django supports, so hashable)."""

    @dataclass(frozen=True)
    class Cell:
        names: tuple[str, ...]
        csv: str
        csv_quoted: str
        json: str

    def __init__(self):
        self.cache: dict = {}

    def get(self, final, proposed) -> "Cell":
        try:
            return self.cache[final, proposed]
        except KeyError:
            names = tuple(_json(final) or _json(proposed) or ())
            joined = neutralise(join_labels(names))
            cell = self.cache[final, proposed] = self.Cell(names, joined, _csv_quote(joined),
                                                           json.dumps(list(names), ensure_ascii=False))
            return cell


def _json(value):
    """A JSON column as read from the cursor: text on PostgreSQL (Django loads jsonb as text) and SQLite."""
    return json.loads(value) if isinstance(value, str) else value


def _iso_reader():
    """Timestamps arrive as aware datetimes from PostgreSQL and as UTC text from SQLite; both leave as ISO 8601."""
    def iso(value) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value).replace(tzinfo=dt_timezone.utc)
        return value.isoformat()
    return iso


def _last_reviews(project: Project, first_id: int, last_id: int) -> dict[int, tuple[str, str]]:
    """item id -> (username, action) of its latest Review, for the items of one batch, in one query."""
    latest = (Review.objects.filter(project=project, item_id__gte=first_id, item_id__lte=last_id)
              .values("item_id").annotate(last=Max("id")).values("last"))
    # Served by review_item_recent (item_id, -id) for the grouping, then the primary key.
    rows = Review.objects.filter(id__in=latest).values_list("item_id", "user__username", "action")
    return {item_id: (username or "", action) for item_id, username, action in rows}


def columns(provenance: bool) -> list[str]:
    return BASE_COLUMNS + (PROVENANCE_COLUMNS if provenance else [])


def export_csv(*, project: Project, filters: ExportFilters, provenance: bool = False) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns(provenance))
    for batch in export_records(project=project, filters=filters, provenance=provenance):
        if provenance:
            writer.writerows([
                (r[0], neutralise(r[1]), r[2].csv, r[3], r[4], r[5], _blank(r[6]), _json_cell(r[7]), neutralise(r[8]),
                 _blank(r[9]), neutralise(r[10]), _blank(r[11]), _json_cell(r[12]), neutralise(r[13]), r[14],
                 _blank(r[15]))
                for r in batch
            ])
        else:
            # The base columns are written by hand (the csv module's per-row overhead is most of an export's time):
            # id is an int, status and source are enum names, the label cell is quoted once per distinct cell.
            buffer.write("".join([f"{r[0]},{_csv_quote(neutralise(r[1]))},{r[2].csv_quoted},{r[3]},{r[4]}\n"
                                  for r in batch]))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def export_jsonl(*, project: Project, filters: ExportFilters, provenance: bool = False) -> Iterator[str]:
    # Lines are assembled from pre-encoded parts: the same JSON as json.dumps(ensure_ascii=False) of the whole object,
    # without building a dict per row.
    string = json.encoder.encode_basestring
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for batch in export_records(project=project, filters=filters, provenance=provenance):
        lines = [f'{{"id": {r[0]}, "text": {string(r[1])}, "labels": {r[2].json}, "status": {string(r[3])}, '
                 f'"source": {string(r[4])}' for r in batch]
        if provenance:
            lines = [line + ", " + dumps(dict(zip(PROVENANCE_COLUMNS, (
                r[5], r[6], _json_text(r[7]), r[8], r[9], r[10], r[11], _json_text(r[12]), r[13], r[14], r[15]))))[1:]
                for line, r in zip(lines, batch, strict=True)]
        else:
            lines = [line + "}" for line in lines]
        lines.append("")
        yield "\n".join(lines)


def export_stream(*, project: Project, fmt: str, filters: ExportFilters, provenance: bool = False) -> Iterator[str]:
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown export format {fmt!r}")
    if connection.vendor == "postgresql" and not provenance:
        return _postgres_copy(project=project, filters=filters, fmt=fmt)
    export = export_csv if fmt == "csv" else export_jsonl
    return export(project=project, filters=filters, provenance=provenance)


def _postgres_copy(*, project: Project, filters: ExportFilters, fmt: str) -> Iterator[str]:
    """The base export written by PostgreSQL: the Django query, with cells built in SQL, inside COPY ... TO STDOUT."""
    t = connection.ops.quote_name(Item._meta.db_table)
    labels = (f'CASE WHEN jsonb_array_length({t}."final_labels") > 0 THEN {t}."final_labels" '
              f'ELSE {t}."proposed_labels" END')
    qs = export_queryset(project=project, filters=filters).order_by("id")
    if filters.label:
        qs = qs.alias(labels_json=RawSQL(labels, [], output_field=JSONField())).filter(
            labels_json__contains=[filters.label])
    if fmt == "csv":
        formula = "^" + _FORMULA.pattern
        # join_labels in SQL: \ and | inside a name escaped with \, names joined with |, NULL (an empty cell) for none.
        joined = (f"SELECT string_agg(replace(replace(l.x, '\\', '\\\\'), '|', '\\|'), '|' ORDER BY l.n) "
                  f"FROM jsonb_array_elements_text({labels}) WITH ORDINALITY AS l(x, n)")
        rows = qs.annotate(
            text_cell=RawSQL(f'CASE WHEN {t}."text" ~ %s THEN %s || {t}."text" ELSE {t}."text" END', [formula, "'"]),
            labels_cell=RawSQL(f"SELECT CASE WHEN c ~ %s THEN %s || c ELSE c END FROM ({joined}) AS j(c)",
                               [formula, "'"]),
        ).values_list("id", "text_cell", "labels_cell", "status", "source")
        header, options = ",".join(BASE_COLUMNS) + "\n", "FORMAT csv"
    else:
        line = (f"json_build_object('id', {t}.\"id\", 'text', {t}.\"text\", 'labels', {labels}, "
                f"'status', {t}.\"status\", 'source', {t}.\"source\")::text")
        rows = qs.annotate(line=RawSQL(line, [])).values_list("line")
        # CSV format with delimiter and quote characters JSON always escapes: each line comes out as it is.
        header, options = "", "FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01'"
    select = connection.ops.compose_sql(*rows.query.sql_with_params())
    yield header
    decoder = codecs.getincrementaldecoder("utf-8")()
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({select}) TO STDOUT WITH ({options})") as copy:
        for block in copy:
            yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


def _csv_quote(cell: str) -> str:
    """RFC 4180 quoting, as csv.writer's QUOTE_MINIMAL does it: quote a cell holding a comma, quote or line break."""
    if '"' in cell:
        return '"' + cell.replace('"', '""') + '"'
    if "," in cell or "\n" in cell or "\r" in cell:
        return '"' + cell + '"'
    return cell


def _blank(value):
    return "" if value is None else value


def _json_cell(value) -> str:
    return "" if value in (None, {}, []) else neutralise(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _json_text(value) -> str | None:
    return None if value in (None, {}, []) else json.dumps(value, ensure_ascii=False, sort_keys=True)


# --- The audit log ---------------------------------------------------------------------------------------------------

AUDIT_COLUMNS = ["id", "created_at", "item_id", "user", "action", "reason", "note", "time_spent_ms", "is_audit",
                 "before", "after"]


def audit_log_records(*, project: Project) -> Iterator[list[dict]]:
    """Batches of every Review row of the project, oldest first, read by id ranges (keyset pagination)."""
    # Served by the primary key: WHERE project_id = ? AND id > ? ORDER BY id LIMIT ?.
    qs = (Review.objects.filter(project=project).order_by("id")
          .values("id", "created_at", "item_id", "user__username", "action", "reason", "note", "time_spent_ms",
                  "is_audit", "before", "after"))
    last = 0
    while batch := list(qs.filter(id__gt=last)[:BATCH]):
        last = batch[-1]["id"]
        yield [{**r, "user": r.pop("user__username") or "", "created_at": r["created_at"].isoformat()} for r in batch]


def audit_log_stream(*, project: Project, fmt: str) -> Iterator[str]:
    """The full, append-only review log as CSV (formulas neutralised, before/after as JSON text) or JSONL."""
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown export format {fmt!r}")
    if fmt == "jsonl":
        for batch in audit_log_records(project=project):
            yield "".join(json.dumps({c: r[c] for c in AUDIT_COLUMNS}, ensure_ascii=False) + "\n" for r in batch)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # as the item export
    writer.writerow(AUDIT_COLUMNS)
    for batch in audit_log_records(project=project):
        writer.writerows([
            (r["id"], r["created_at"], r["item_id"], neutralise(r["user"]), r["action"], neutralise(r["reason"]),
             neutralise(r["note"]), _blank(r["time_spent_ms"]), r["is_audit"],
             neutralise(json.dumps(r["before"], ensure_ascii=False, sort_keys=True)),
             neutralise(json.dumps(r["after"], ensure_ascii=False, sort_keys=True)))
            for r in batch
        ])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
