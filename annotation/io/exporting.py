"""Export a project's items (and its audit log) as CSV or JSONL, streamed so memory stays flat at any size.

The formats are listed once, in ``EXPORT_FORMATS``: name, label, content type, file extension, and their writers (the
streaming writer of items, the PostgreSQL COPY path of the base columns, the writer of the audit log). The form, the
pages and the command read it; a format it does not list is an error.

Columns: ``id, text, labels, status, source``; with provenance also ``created_at, job_id, conditions, model,
llm_confidence, model_label, ambiguity, scores, reviewer, review_action, reviewed_at``; with ``mark_verified`` last
``verified``. ``labels`` are the item's
final labels if a person decided, else the LLM's proposal. ``reviewer``/``review_action`` come from the item's last
Review row (loaded once per batch, not per item).

CSV: one header row, UTF-8 without BOM, RFC 4180 quoting, lines ending in LF. Several labels share one cell joined
with ``|`` (see ``annotation.io.importing.join_labels``; label names cannot contain ``|``). Cells a spreadsheet would run
as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) get a leading ``'``, and so does a cell that already
starts with ``'`` before one of those, so the importer can undo it exactly. Nested values (conditions, scores) are
JSON text.

Verified items: those a person accepted, and the auto-accepted ones while the project's routing certificate holds
(``Project.routing_state`` phase "reached", annotation/selection/rounds.py). The lead's export page exports only
those unless asked for everything, and then marks each row (``ExportFilters.mark_verified``, always the Python path).

JSONL: one object per line, ``labels`` a list, nested values (conditions, scores) JSON text so every line has the same
column types (what pandas and the ``datasets`` JSON loader need). No formula protection: JSON is not opened by
spreadsheets.

Rows are read in keyset batches of ``BATCH`` as ``ExportRow``s. Without provenance, PostgreSQL formats the base columns
itself in one ``COPY ... TO STDOUT`` by the same rules (each format's ``copy_items``, run through
``synthstudio.lib.sql.rows_formatted``); Python only passes the bytes on, so an export costs little more than the COPY
itself. The test suite runs on both databases, so both paths meet the same tests (formula protection, label cells,
round trip).
"""
import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import JSONField, Max, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.io.importing import join_labels
from annotation.items.counts import item_counts
from annotation.models import Item, Project, Review, Status
from synthstudio.lib import sql

BATCH = 5000
# Characters per chunk of a streamed export (about 64 KB of mostly ASCII text): see ``_buffered``.
CHUNK_CHARS = 64 * 1024
BASE_COLUMNS = ["id", "text", "labels", "status", "source"]
PROVENANCE_COLUMNS = ["created_at", "job_id", "conditions", "model", "llm_confidence", "model_label", "ambiguity",
                      "scores", "reviewer", "review_action", "reviewed_at"]
_BASE_FIELDS = ["id", "text", "final_labels", "proposed_labels", "status", "source"]
_PROVENANCE_FIELDS = ["created_at", "generation_job_id", "provenance", "llm_confidence", "model_label", "ambiguity",
                      "model_scores", "reviewed_at"]
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_FORMULA_FIRST = frozenset("'=+-@\t\r")


@dataclass(frozen=True)
class ExportFilters:
    statuses: tuple[str, ...] = ()
    source: str = ""
    label: str = ""
    created_from: date | None = None
    created_to: date | None = None
    verified_only: bool = False  # only the verified items (module docstring)
    mark_verified: bool = False  # add the ``verified`` column


def verified_statuses(project: Project) -> tuple[str, ...]:
    """People's decisions, and the auto-accepted items only while the target is certified (module docstring)."""
    if project.routing_state.get("phase") == "reached":
        return Status.ACCEPTED, Status.AUTO_ACCEPTED
    return (Status.ACCEPTED,)


def neutralise(cell: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would evaluate (OWASP CSV injection); reversible, see the docstring."""
    if cell and cell[0] in _FORMULA_FIRST and _FORMULA.match(cell):
        return "'" + cell
    return cell


def export_queryset(*, project: Project, filters: ExportFilters):
    qs = Item.objects.filter(project=project, archived_at__isnull=True)
    if filters.verified_only:
        qs = qs.filter(status__in=verified_statuses(project))
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
    """How many items the filters select; None with a label filter, which is applied while streaming.

    Filters by status alone (the page's default, verified items, or chosen statuses) are answered from the per-status
    counters (annotation/items/counts.py) without reading the items; a source or date filter counts the items."""
    if filters.label:
        return None
    if filters.source or filters.created_from or filters.created_to:
        return export_queryset(project=project, filters=filters).count()
    counts = item_counts(project_id=project.pk)
    statuses = set(counts)
    if filters.verified_only:
        statuses &= set(verified_statuses(project))
    if filters.statuses:
        statuses &= set(filters.statuses)
    return sum(counts[status] for status in statuses)


class ExportRow(NamedTuple):
    """One exported item: the base columns."""

    id: int
    text: str
    labels: "_LabelCells.Cell"
    status: str
    source: str


class ProvenanceRow(NamedTuple):
    """One exported item with the provenance columns."""

    id: int
    text: str
    labels: "_LabelCells.Cell"
    status: str
    source: str
    created_at: str | None
    job_id: int | None
    conditions: Any
    model: str
    llm_confidence: float | None
    model_label: str | None
    ambiguity: float | None
    scores: Any
    reviewer: str
    review_action: str
    reviewed_at: str | None


def export_records(*, project: Project, filters: ExportFilters,
                   provenance: bool = False) -> Iterator[list[ExportRow] | list[ProvenanceRow]]:
    """Batches of ``ExportRow`` (``ProvenanceRow`` with provenance), read by id ranges.

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
        query, params = qs.filter(id__gt=last)[:BATCH].query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            rows = cursor.fetchall()
        if not rows:
            return
        first, last = rows[0][0], rows[-1][0]
        if provenance:
            reviews = _last_reviews(project, first, last)
            out = [_with_provenance(r, get, reviews, iso) for r in rows]
        else:
            out = [ExportRow(item_id, text, get(final, proposed), status, source)
                   for item_id, text, final, proposed, status, source in rows]
        if label:
            out = [r for r in out if label in r.labels.names]
        if out:
            yield out


def _with_provenance(row: tuple, label_cell, reviews: dict, iso) -> ProvenanceRow:
    (item_id, text, final, proposed, status, source,
     created_at, job_id, provenance, confidence, model_label, ambiguity, scores, reviewed_at) = row
    prov = _json(provenance) or {}
    reviewer, action = reviews.get(item_id, ("", ""))
    return ProvenanceRow(item_id, text, label_cell(final, proposed), status, source, iso(created_at), job_id,
                         prov.get("conditions"), prov.get("model") or prov.get("model_name") or "", confidence,
                         model_label, ambiguity, _json(scores), reviewer, action, iso(reviewed_at))


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


def export_stream(*, project: Project, fmt: str, filters: ExportFilters, provenance: bool = False) -> Iterator[str]:
    """The export as text chunks of about ``CHUNK_CHARS`` characters; ServiceError for a format ``EXPORT_FORMATS``
    does not list."""
    return _buffered(_export_text(project=project, fmt=fmt, filters=filters, provenance=provenance))


def _buffered(pieces: Iterator[str], size: int = CHUNK_CHARS) -> Iterator[str]:
    """The same text in chunks of at least ``size`` characters (the last may be shorter), none empty.

    psycopg hands a COPY over in blocks of about one row, and each chunk a view yields is one write by the server
    (gunicorn: a send per chunk): 100,000 rows were 100,000 sends, 5-9x the time of the COPY itself over HTTP
    (bench/RESULTS.md). Joining them costs one pass over the text."""
    held, length = [], 0
    for piece in pieces:
        held.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(held)
            held, length = [], 0
    if length:
        yield "".join(held)


def _export_text(*, project: Project, fmt: str, filters: ExportFilters, provenance: bool) -> Iterator[str]:
    spec = export_format(fmt)

    def batches():
        return export_records(project=project, filters=filters, provenance=provenance)

    if filters.mark_verified:
        verified = verified_statuses(project)
        return spec.write_items(batches(), provenance, verified=lambda status: status in verified)
    if provenance:
        return spec.write_items(batches(), True)  # joined with each batch's last reviews: Python on every database
    return sql.rows_formatted(
        copy=lambda: spec.copy_items(export_queryset(project=project, filters=filters).order_by("id"), filters.label),
        stream=lambda: spec.write_items(batches(), False),
    )


# --- CSV -------------------------------------------------------------------------------------------------------------

def _csv_items(batches: Iterator[list[ExportRow] | list[ProvenanceRow]], provenance: bool,
               verified: Callable[[str], bool] | None = None) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns(provenance) + (["verified"] if verified else []))
    for batch in batches:
        if verified:
            writer.writerows([(r.id, neutralise(r.text), r.labels.csv, r.status, r.source,
                               *(_csv_provenance(r) if provenance else ()), _bool(verified(r.status)))
                              for r in batch])
        elif provenance:
            writer.writerows([(r.id, neutralise(r.text), r.labels.csv, r.status, r.source, *_csv_provenance(r))
                              for r in batch])
        else:
            # The base columns are written by hand (the csv module's per-row overhead is most of an export's time):
            # id is an int, status and source are enum names, the label cell is quoted once per distinct cell.
            buffer.write("".join([f"{r.id},{_csv_quote(neutralise(r.text))},{r.labels.csv_quoted},{r.status},{r.source}\n"
                                  for r in batch]))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _csv_provenance(r: ProvenanceRow) -> tuple:
    return (r.created_at, _blank(r.job_id), _json_cell(r.conditions), neutralise(r.model), _blank(r.llm_confidence),
            neutralise(r.model_label), _blank(r.ambiguity), _json_cell(r.scores), neutralise(r.reviewer),
            r.review_action, _blank(r.reviewed_at))


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _csv_items_copy(rows: QuerySet, label: str) -> sql.CopySelect:
    """The base CSV export formatted by PostgreSQL: formula protection and the label cell in SQL."""
    t, labels, rows = _copy_labels(rows, label)
    formula = "^" + _FORMULA.pattern
    # join_labels in SQL: \ and | inside a name escaped with \, names joined with |, NULL (an empty cell) for none.
    joined = (f"SELECT string_agg(replace(replace(l.x, '\\', '\\\\'), '|', '\\|'), '|' ORDER BY l.n) "
              f"FROM jsonb_array_elements_text({labels}) WITH ORDINALITY AS l(x, n)")
    rows = rows.annotate(
        text_cell=RawSQL(f'CASE WHEN {t}."text" ~ %s THEN %s || {t}."text" ELSE {t}."text" END', [formula, "'"]),
        labels_cell=RawSQL(f"SELECT CASE WHEN c ~ %s THEN %s || c ELSE c END FROM ({joined}) AS j(c)", [formula, "'"]),
    ).values_list("id", "text_cell", "labels_cell", "status", "source")
    return sql.CopySelect(rows=rows, options="FORMAT csv", header=",".join(BASE_COLUMNS) + "\n")


def _csv_reviews(batches: Iterator[list[dict]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # as the item export
    writer.writerow(AUDIT_COLUMNS)
    for batch in batches:
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


# --- JSONL -----------------------------------------------------------------------------------------------------------

def _jsonl_items(batches: Iterator[list[ExportRow] | list[ProvenanceRow]], provenance: bool,
                 verified: Callable[[str], bool] | None = None) -> Iterator[str]:
    # Lines are assembled from pre-encoded parts: the same JSON as json.dumps(ensure_ascii=False) of the whole object,
    # without building a dict per row.
    string = json.encoder.encode_basestring
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for batch in batches:
        lines = [f'{{"id": {r.id}, "text": {string(r.text)}, "labels": {r.labels.json}, "status": {string(r.status)}, '
                 f'"source": {string(r.source)}' for r in batch]
        if provenance:
            lines = [line + ", " + dumps(dict(zip(PROVENANCE_COLUMNS, (
                r.created_at, r.job_id, _json_text(r.conditions), r.model, r.llm_confidence, r.model_label,
                r.ambiguity, _json_text(r.scores), r.reviewer, r.review_action, r.reviewed_at), strict=True)))[1:-1]
                for line, r in zip(lines, batch, strict=True)]
        if verified:
            lines = [f'{line}, "verified": {_bool(verified(r.status))}' for line, r in zip(lines, batch, strict=True)]
        lines = [line + "}" for line in lines]
        lines.append("")
        yield "\n".join(lines)


def _jsonl_items_copy(rows: QuerySet, label: str) -> sql.CopySelect:
    """The base JSONL export built by PostgreSQL: one json_build_object per line."""
    t, labels, rows = _copy_labels(rows, label)
    line = (f"json_build_object('id', {t}.\"id\", 'text', {t}.\"text\", 'labels', {labels}, "
            f"'status', {t}.\"status\", 'source', {t}.\"source\")::text")
    # CSV format with delimiter and quote characters JSON always escapes: each line comes out as it is.
    return sql.CopySelect(rows=rows.annotate(line=RawSQL(line, [])).values_list("line"),
                          options="FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01'")


def _jsonl_reviews(batches: Iterator[list[dict]]) -> Iterator[str]:
    for batch in batches:
        yield "".join(json.dumps({c: r[c] for c in AUDIT_COLUMNS}, ensure_ascii=False) + "\n" for r in batch)


def _json_text(value) -> str | None:
    return None if value in (None, {}, []) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _copy_labels(rows: QuerySet, label: str) -> tuple[str, str, QuerySet]:
    """For the COPY writers: the quoted table, the SQL of the labels an item shows (final, else proposed) and the rows
    with the label filter applied in SQL."""
    t = connection.ops.quote_name(Item._meta.db_table)
    labels = (f'CASE WHEN jsonb_array_length({t}."final_labels") > 0 THEN {t}."final_labels" '
              f'ELSE {t}."proposed_labels" END')
    if label:
        rows = rows.alias(labels_json=RawSQL(labels, [], output_field=JSONField())).filter(
            labels_json__contains=[label])
    return t, labels, rows


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
    """The full, append-only review log (formulas neutralised in CSV, before/after as JSON text); ServiceError for a
    format ``EXPORT_FORMATS`` does not list."""
    return export_format(fmt).write_reviews(audit_log_records(project=project))


# --- The registry ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportFormat:
    """A file format of the item export and the audit log. A new format is one entry here (and a reader in
    ``importing.IMPORT_FORMATS``, which the round-trip test asks for)."""

    name: str
    label: str
    content_type: str
    extensions: tuple[str, ...]  # the first names a download; any of them names the format of a file to write
    description: str
    # Batches of ExportRow / ProvenanceRow -> text; called with ``verified=`` (status -> bool) for a marked export.
    write_items: Callable[..., Iterator[str]]
    copy_items: Callable[[QuerySet, str], sql.CopySelect]  # PostgreSQL: base columns of rows with the label filter
    write_reviews: Callable[[Iterator[list[dict]]], Iterator[str]]

    @property
    def extension(self) -> str:
        """The extension a download is named with."""
        return self.extensions[0]


EXPORT_FORMATS = {fmt.name: fmt for fmt in (
    ExportFormat(
        "csv", "CSV", "text/csv; charset=utf-8", ("csv",),
        "Several labels in one cell are joined with |. A cell a spreadsheet would run as a formula (starting with "
        "=, +, -, @, tab or carriage return) starts with an added ', which importing the file here removes again.",
        _csv_items, _csv_items_copy, _csv_reviews,
    ),
    ExportFormat(
        "jsonl", "JSONL", "application/jsonl; charset=utf-8", ("jsonl", "ndjson"),
        "One object per line; labels is a list. Loads with pandas.read_json(path, lines=True) and "
        "datasets.load_dataset(\"json\", data_files=path).",
        _jsonl_items, _jsonl_items_copy, _jsonl_reviews,
    ),
)}


def export_format(name: str) -> ExportFormat:
    try:
        return EXPORT_FORMATS[name]
    except KeyError:
        raise ServiceError(f"Unknown export format '{name}'; the formats are {', '.join(EXPORT_FORMATS)}.") from None


def format_for_path(path: str) -> str:
    """The format a file name's extension names; ServiceError for an extension no format has."""
    suffix = path.lower().rpartition(".")[2]
    for fmt in EXPORT_FORMATS.values():
        if suffix in fmt.extensions:
            return fmt.name
    names = [f".{ext}" for fmt in EXPORT_FORMATS.values() for ext in fmt.extensions]
    raise ServiceError(f"Cannot tell the format from the name '{path}': end it in {', '.join(names)}, "
                       "or give the format.")
