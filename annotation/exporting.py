"""Export a project's items as CSV or JSONL, streamed in keyset batches so memory stays flat at any size.

Columns: ``id, text, labels, status, source, created_at``; with provenance also ``job_id, conditions, model,
llm_confidence, model_label, ambiguity, scores, reviewer, review_action, reviewed_at``. ``labels`` are the item's
final labels if a person decided, else the LLM's proposal. ``reviewer``/``review_action`` come from the item's last
Review row (loaded once per batch, not per item).

CSV: one header row, UTF-8 without BOM, RFC 4180 quoting. Several labels share one cell joined with ``|`` (see
``annotation.importing.join_labels``; label names cannot contain ``|``). Cells a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, tab or CR) get a leading ``'``, and so does a cell that already starts with
``'`` before one of those, so the importer can undo it exactly. Nested values (conditions, scores) are JSON text.

JSONL: one object per line, ``labels`` a list, nested values (conditions, scores) JSON text so every line has the same
column types (what pandas and the ``datasets`` JSON loader need). No formula protection: JSON is not opened by
spreadsheets.
"""
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Max
from django.utils import timezone

from annotation.importing import join_labels
from annotation.models import Item, Project, Review

BATCH = 5000
BASE_COLUMNS = ["id", "text", "labels", "status", "source", "created_at"]
PROVENANCE_COLUMNS = ["job_id", "conditions", "model", "llm_confidence", "model_label", "ambiguity", "scores",
                      "reviewer", "review_action", "reviewed_at"]
_BASE_FIELDS = ["id", "text", "final_labels", "proposed_labels", "status", "source", "created_at"]
_PROVENANCE_FIELDS = ["generation_job_id", "provenance", "llm_confidence", "model_label", "ambiguity", "model_scores",
                      "reviewed_at"]
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
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
    return "'" + cell if _FORMULA.match(cell) else cell


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
    """Batches of row tuples in column order (``columns(provenance)``), read by id ranges (keyset pagination)."""
    fields = _BASE_FIELDS + (_PROVENANCE_FIELDS if provenance else [])
    # Served by the primary key, or by item_project_status_id when a status filter applies: WHERE ... AND id > ?
    # ORDER BY id LIMIT ?.
    qs = export_queryset(project=project, filters=filters).order_by("id").values_list(*fields)
    label, last = filters.label, 0
    while True:
        rows = list(qs.filter(id__gt=last)[:BATCH])
        if not rows:
            return
        last = rows[-1][0]
        reviews = _last_reviews(project, rows[0][0], last) if provenance else {}
        out = []
        for r in rows:
            labels = r[2] or r[3]
            if label and label not in labels:
                continue
            record = (r[0], r[1], labels, r[4], r[5], r[6])
            if provenance:
                prov = r[8] or {}
                reviewer, action = reviews.get(r[0], ("", ""))
                record += (r[7], prov.get("conditions"), prov.get("model") or prov.get("model_name") or "", r[9],
                           r[10], r[11], r[12], reviewer, action, r[13])
            out.append(record)
        if out:
            yield out


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
    writer = csv.writer(buffer)
    writer.writerow(columns(provenance))
    for batch in export_records(project=project, filters=filters, provenance=provenance):
        for r in batch:
            row = [r[0], neutralise(r[1]), neutralise(join_labels(r[2])), r[3], r[4], r[5].isoformat()]
            if provenance:
                row += [_int(r[6]), _json_cell(r[7]), neutralise(r[8]), _num(r[9]), neutralise(r[10]), _num(r[11]),
                        _json_cell(r[12]), neutralise(r[13]), r[14], r[15].isoformat() if r[15] else ""]
            writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def export_jsonl(*, project: Project, filters: ExportFilters, provenance: bool = False) -> Iterator[str]:
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    names = columns(provenance)
    for batch in export_records(project=project, filters=filters, provenance=provenance):
        lines = []
        for r in batch:
            values = [r[0], r[1], r[2], r[3], r[4], r[5].isoformat()]
            if provenance:
                values += [r[6], _json_text(r[7]), r[8], r[9], r[10], r[11], _json_text(r[12]), r[13], r[14],
                           r[15].isoformat() if r[15] else None]
            lines.append(dumps(dict(zip(names, values))))
        lines.append("")
        yield "\n".join(lines)


def export_stream(*, project: Project, fmt: str, filters: ExportFilters, provenance: bool = False) -> Iterator[str]:
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown export format {fmt!r}")
    export = export_csv if fmt == "csv" else export_jsonl
    return export(project=project, filters=filters, provenance=provenance)


def _int(value) -> str | int:
    return "" if value is None else value


def _num(value) -> str | float:
    return "" if value is None else value


def _json_cell(value) -> str:
    return "" if value in (None, {}, []) else neutralise(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _json_text(value) -> str | None:
    return None if value in (None, {}, []) else json.dumps(value, ensure_ascii=False, sort_keys=True)
