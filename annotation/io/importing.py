"""Import items from CSV or JSONL files: stream, validate every row, then write everything in one transaction.

An import reads the file twice, never holding it in memory:

1. **Validate**: every row is parsed and checked (text present, labels known, confidence a number in [0, 1], ...).
   Errors are collected with row number, field and reason (the first ``MAX_ERRORS`` are kept, all are counted). Texts
   are hashed (``synthstudio.lib.text.content_digest``) to find duplicates within the file (8 bytes per row) and against the
   project (one indexed query per batch). Any error fails the whole import; nothing is written.
2. **Write**: the rows are parsed again and written in batches inside one transaction (all or nothing), through
   ``synthstudio.lib.sql.rows_insert`` (``COPY FROM STDIN`` on PostgreSQL, ``bulk_create`` elsewhere). The job is marked
   done in the same transaction, so a job is done exactly when its items are stored.

A run holds the job's process lock (``synthstudio.lib.sql.process_lock``) from before its claim to its end. A job that
is still validating or importing while nobody holds its lock has lost its worker (killed, out of memory, machine gone):
``import_jobs_reap``, called when the import pages are read, marks it failed, and its transaction, if it had one, died
with the worker, so nothing was stored.

Row numbers are what a person looks up: in a CSV file the spreadsheet row (the header is row 1, the first item row 2),
in a JSONL file the line number.

Mapping: the text column (required); an optional gold/seed label column (such rows are human-verified: stored
``accepted`` with ``final_labels``); optional LLM label and confidence columns (stored as ``proposed_labels`` and
``llm_confidence``, status ``proposed``); rows with neither are ``proposed``. Every other column is kept in
``Item.extra``.

The record of an import is its ``ImportJob`` (who, when, which file, the mapping, counts, errors); each item points at
it through ``provenance`` (``{"import_job": id, "row": n}``) and its idempotency key. There is no Review row per
created item: creating an item overwrites nothing (the Review log records changes), generated items are not logged
per item either, and at a million rows the extra rows would cost a third of the import time.

Label cells: a JSONL value is a label name or a list of names. A CSV cell holds several labels joined with ``|``
(label names cannot contain ``|``; a literal ``|`` or ``\\`` in a cell written by another tool is escaped with ``\\``).
CSV cells that our export protected against spreadsheet formulas (a leading ``'`` before ``= + - @``, tab or CR) are
restored, so export then import gives the same text back (``ImportOptions.unescape_formulas``).

Files must be UTF-8, with or without a byte-order mark; anything else fails with a message saying so. A NUL character
anywhere in a row (PostgreSQL can store it neither in text nor in JSON) is that row's error, naming the field.

The formats a file can have are listed once, in ``IMPORT_FORMATS``; the export's are in ``exporting.EXPORT_FORMATS``.
"""
import codecs
import csv
import io
import json
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import reset_queries, transaction
from django.utils import timezone

from annotation.events import event_publish
from annotation.models import ImportJob, Item, Project, Source, Status
from annotation.projects.schema import LABEL_SEPARATOR
from annotation.selection import selection_request_round
from synthstudio.lib import sql
from synthstudio.lib.text import content_digest

MAX_ERRORS = 100
MAX_DUPLICATE_EXAMPLES = 50
MAX_TEXT_CHARS = 100_000
BATCH = 2000
# Progress is written every this many rows: often enough for a progress bar, rarely enough to cost nothing.
PROGRESS_EVERY = 20_000
ANALYZE_AFTER_ROWS = 50_000
UPLOAD_DIR = "imports"
RUNNING = (ImportJob.State.VALIDATING, ImportJob.State.IMPORTING)
WORKER_LOST = "The worker running this import stopped; nothing was stored. Upload the file again."
NUL_REASON = "contains a NUL character (\\x00), which the database cannot store; remove it and import again"
RUN_LOCK = "import"  # the name of the process lock a run holds (synthstudio.lib.sql.process_lock)

_FORMULA_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
_TEXT_BOMS = {codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16", codecs.BOM_UTF32_LE: "UTF-32",
              codecs.BOM_UTF32_BE: "UTF-32"}


class ImportFailed(Exception):
    """The file as a whole cannot be imported (wrong encoding, missing column, ...); the message says why."""

    def __init__(self, message: str, *, row: int | None = None, field: str = ""):
        super().__init__(_storable(message))
        self.row = row
        self.field = _storable(field)


def _storable(text: str) -> str:
    """Messages quote the file (column names, cells); PostgreSQL cannot store a NUL character in a JSON string."""
    return text.replace("\x00", "\\x00")


@dataclass(frozen=True)
class ImportOptions:
    format: str
    text_column: str = "text"
    label_column: str = ""
    llm_label_column: str = ""
    llm_confidence_column: str = ""
    duplicates: str = "skip"  # or "keep"
    unescape_formulas: bool = True  # CSV only

    def __post_init__(self):
        if self.format not in IMPORT_FORMATS:
            raise ImportFailed(f"Unknown format '{self.format}'; use {' or '.join(IMPORT_FORMATS)}.")
        if self.duplicates not in ("skip", "keep"):
            raise ImportFailed("Duplicates must be 'skip' or 'keep'.")
        if not self.text_column:
            raise ImportFailed("Name the column that holds the text.")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def mapped(self) -> set[str]:
        return {c for c in (self.text_column, self.label_column, self.llm_label_column,
                            self.llm_confidence_column) if c}


def format_for(file_name: str) -> str:
    """The format a file's name says; a name no format claims is refused rather than guessed."""
    lower = file_name.lower()
    for fmt in IMPORT_FORMATS.values():
        if lower.endswith(fmt.extensions):
            return fmt.name
    raise ImportFailed(f"Cannot tell the format of '{Path(file_name).name}' from its name: "
                       f"name it {', '.join(extensions())}, or give the format.")


def extensions() -> list[str]:
    return [ext for fmt in IMPORT_FORMATS.values() for ext in fmt.extensions]


@dataclass
class ImportRow:
    """One validated row, ready to become an Item."""

    row: int
    text: str
    final_labels: list[str] = field(default_factory=list)
    proposed_labels: list[str] = field(default_factory=list)
    llm_confidence: float | None = None
    extra: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


@dataclass
class RowProblem:
    row: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": _storable(self.field), "message": _storable(self.message)}


@dataclass
class ValidationReport:
    rows: int = 0
    n_errors: int = 0
    errors: list[dict] = field(default_factory=list)
    duplicates: int = 0
    duplicate_rows: list[dict] = field(default_factory=list)
    # skip[i] == 1: the i-th data row is a duplicate that the "skip" policy leaves out.
    skip: bytearray = field(default_factory=bytearray)

    def add_error(self, problem: RowProblem) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(problem.as_dict())

    def error_list(self) -> list[dict]:
        if self.n_errors > len(self.errors):
            more = self.n_errors - len(self.errors)
            return self.errors + [{"row": None, "field": "", "message": f"... and {more} more errors"}]
        return self.errors


# --- Label cells -----------------------------------------------------------------------------------------------------

def join_labels(labels: Iterable[str]) -> str:
    """The CSV cell for several labels: ``a|b``; ``|`` and ``\\`` inside a name are escaped with ``\\``."""
    return LABEL_SEPARATOR.join(name.replace("\\", "\\\\").replace("|", "\\|") for name in labels)


def split_labels(cell: str) -> list[str]:
    """Inverse of ``join_labels``; blanks around names are ignored, empty parts dropped."""
    if "\\" not in cell:
        parts = cell.split(LABEL_SEPARATOR)
    else:
        parts, current, chars = [], [], iter(cell)
        for ch in chars:
            if ch == "\\":
                current.append(next(chars, "\\"))
            elif ch == LABEL_SEPARATOR:
                parts.append("".join(current))
                current = []
            else:
                current.append(ch)
        parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def unescape_formula(cell: str) -> str:
    """Undo ``exporting.neutralise``: drop the ``'`` it put before a cell a spreadsheet would run as a formula."""
    return cell[1:] if cell[:1] == "'" and _FORMULA_ESCAPED.match(cell) else cell


# --- Reading records -------------------------------------------------------------------------------------------------

def _open_text(path: Path) -> io.TextIOWrapper:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the TextIOWrapper that wraps it
    head = raw.read(4)
    for bom, name in _TEXT_BOMS.items():
        if head.startswith(bom) and not head.startswith(codecs.BOM_UTF8):
            raw.close()
            raise ImportFailed(f"The file is {name}; save it as UTF-8 (with or without BOM) and import it again.")
    raw.seek(0)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def _not_utf8(exc: UnicodeDecodeError, row: int) -> ImportFailed:
    return ImportFailed(
        f"The file is not UTF-8: byte 0x{exc.object[exc.start]:02x} cannot be decoded (near row {row}). "
        "Save it as UTF-8 (with or without BOM) and import it again.", row=row,
    )


def iter_records(path: Path, options: ImportOptions) -> Iterator[tuple[int, dict | list[RowProblem]]]:
    """Yield ``(row number, {column: value})`` for each data row, or ``(row, [problems])`` for an unreadable one."""
    with _open_text(path) as f:
        yield from IMPORT_FORMATS[options.format].read(f, options)


def _csv_records(f, options: ImportOptions):
    rows = csv.reader(f)
    row = 1
    try:
        header = next(rows, None)
        if not header or not any(h.strip() for h in header):
            raise ImportFailed("The file is empty: a CSV file starts with a header row naming its columns.", row=1)
        header = [h.strip() for h in header]
        seen = set()
        for name in header:
            if name in seen:
                raise ImportFailed(f"Column '{name}' appears twice in the header.", row=1, field=name)
            seen.add(name)
        missing = [c for c in sorted(options.mapped) if c not in seen]
        if missing:
            raise ImportFailed(
                f"No column named {', '.join(repr(m) for m in missing)} in the file; its columns are: "
                f"{', '.join(header)}.", row=1, field=missing[0],
            )
        for name in header:
            if "\x00" in name:
                raise ImportFailed(f"The column name '{name}' {NUL_REASON}.", row=1, field=name)
        width = len(header)
        for cells in rows:
            row += 1
            if not cells:
                continue
            if len(cells) != width:
                yield row, [RowProblem(row, "", f"the row has {len(cells)} cells; the header has {width}")]
                continue
            if "\x00" in "".join(cells):
                yield row, [RowProblem(row, name, NUL_REASON) for name, cell in zip(header, cells) if "\x00" in cell]
                continue
            yield row, dict(zip(header, cells))
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc, row + 1) from None
    except csv.Error as exc:
        yield row + 1, [RowProblem(row + 1, "", f"unreadable CSV ({exc}); nothing after this row was read")]


def _jsonl_records(f, options: ImportOptions):
    row = 0
    try:
        for row, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield row, [RowProblem(row, "", f"bad JSON: {exc.msg} (column {exc.colno})")]
                continue
            except RecursionError:
                yield row, [RowProblem(row, "", "the JSON is nested too deeply to read")]
                continue
            if not isinstance(value, dict):
                yield row, [RowProblem(row, "", "each line must be a JSON object, like {\"text\": \"...\"}")]
                continue
            # A raw NUL is not valid JSON (json.loads refuses it above); only the escape can put one in a value.
            nul = [k for k, v in value.items() if _has_nul(k) or _has_nul(v)] if "\\u0000" in line else []
            if nul:
                yield row, [RowProblem(row, name, NUL_REASON) for name in nul]
                continue
            yield row, value
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc, row + 1) from None


def _has_nul(value) -> bool:
    """Whether any string in a JSON value, keys included, holds a NUL. A loop, not recursion: the value may nest as
    deep as the parser went, and recursing through it again would overflow the stack."""
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


@dataclass(frozen=True)
class ImportFormat:
    """A file format the importer reads. ``text_cells``: every value is text, as in CSV, so several labels share a
    cell joined with ``|`` and the formula quotes of our export are undone."""

    name: str
    extensions: tuple[str, ...]
    read: Callable[[io.TextIOWrapper, ImportOptions], Iterator[tuple[int, dict | list[RowProblem]]]]
    text_cells: bool


IMPORT_FORMATS = {fmt.name: fmt for fmt in (
    ImportFormat("csv", (".csv",), _csv_records, text_cells=True),
    ImportFormat("jsonl", (".jsonl", ".ndjson"), _jsonl_records, text_cells=False),
)}


# --- Checking one row ------------------------------------------------------------------------------------------------

class RowParser:
    """Turns a record into an ImportRow, or the list of its problems."""

    def __init__(self, *, project: Project, options: ImportOptions):
        self.options = options
        self.multi_label = project.multi_label
        names = list(project.labels.values_list("name", flat=True))
        self.labels = {name: name for name in names}
        for name in names:
            self.labels.setdefault(name.casefold(), name)
        self.label_hint = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        self.text_cells = IMPORT_FORMATS[options.format].text_cells
        self.unescape = self.text_cells and options.unescape_formulas
        self.mapped = options.mapped

    def parse(self, row: int, record: dict) -> ImportRow | list[RowProblem]:
        o = self.options
        if self.unescape:
            record = {k: unescape_formula(v) for k, v in record.items()}
        problems: list[RowProblem] = []
        text = record.get(o.text_column)
        if text is None:
            problems.append(RowProblem(row, o.text_column, "missing"))
        elif not isinstance(text, str):
            problems.append(RowProblem(row, o.text_column, "must be a string"))
        elif not text.strip():
            problems.append(RowProblem(row, o.text_column, "the text is empty"))
        elif len(text) > MAX_TEXT_CHARS:
            problems.append(RowProblem(row, o.text_column, f"the text is longer than {MAX_TEXT_CHARS} characters"))
        final = self._labels(row, o.label_column, record.get(o.label_column), problems) if o.label_column else []
        proposed = (self._labels(row, o.llm_label_column, record.get(o.llm_label_column), problems)
                    if o.llm_label_column else [])
        confidence = (self._confidence(row, record.get(o.llm_confidence_column), problems)
                      if o.llm_confidence_column else None)
        if problems:
            return problems
        extra = {k: v for k, v in record.items() if k not in self.mapped}
        return ImportRow(row=row, text=text, final_labels=final, proposed_labels=proposed, llm_confidence=confidence,
                         extra=extra)

    def _labels(self, row: int, column: str, value, problems: list) -> list[str]:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            raw = split_labels(value) if self.text_cells else [value.strip()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            raw = [v.strip() for v in value if v.strip()]
        else:
            problems.append(RowProblem(row, column, "a label is a name, or a list of names"))
            return []
        labels = []
        for name in raw:
            known = self.labels.get(name) or self.labels.get(name.casefold())
            if known is None:
                problems.append(RowProblem(row, column, f"unknown label '{name}' (labels: {self.label_hint})"))
            elif known not in labels:
                labels.append(known)
        if len(labels) > 1 and not self.multi_label:
            problems.append(RowProblem(row, column, "several labels, but the project is single-label"))
        return labels

    def _confidence(self, row: int, value, problems: list) -> float | None:
        column = self.options.llm_confidence_column
        if value is None or value == "":
            return None
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (0.0 <= number <= 1.0):
            problems.append(RowProblem(row, column, f"confidence must be a number from 0 to 1, not {value!r}"))
            return None
        return number


# --- Pass 1: validate ------------------------------------------------------------------------------------------------

def import_validate(
    *, project: Project, path: Path, options: ImportOptions, on_progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Check every row and find duplicate texts; nothing is written. Raises ImportFailed for file-level problems."""
    report = ValidationReport()
    parser = RowParser(project=project, options=options)
    # Per data row: an 8-byte key of the text's hash, its row number, whether the project holds the text already.
    keys, row_numbers, in_project = array("Q"), array("L"), bytearray()
    project_examples: dict[int, int] = {}  # row index -> id of the project item it repeats, for the first few only
    pending: list[tuple[int, str]] = []  # (row index, hex hash) waiting for the batched lookup in the project
    for row, record in iter_records(path, options):
        if isinstance(record, list):
            for problem in record:
                report.add_error(problem)
            parsed = None
        else:
            parsed = parser.parse(row, record)
            if isinstance(parsed, list):
                for problem in parsed:
                    report.add_error(problem)
                parsed = None
        digest = content_digest(parsed.text) if parsed else bytes(8)
        keys.append(int.from_bytes(digest[:8], "little"))
        row_numbers.append(row)
        in_project.append(0)
        if parsed:
            pending.append((len(keys) - 1, digest.hex()))
        if len(pending) >= BATCH:
            _mark_existing(project, pending, in_project, project_examples)
            pending = []
            _forget_queries()
        report.rows = len(keys)
        if on_progress and report.rows % PROGRESS_EVERY == 0:
            on_progress(report.rows)
    _mark_existing(project, pending, in_project, project_examples)
    if report.rows == 0:
        raise ImportFailed("The file has no rows to import.")
    if not report.n_errors:
        _find_duplicates(report, keys, row_numbers, in_project, project_examples,
                         skip=options.duplicates == "skip")
    return report


def _forget_queries() -> None:
    """With DEBUG on, Django keeps the last 9,000 queries' SQL; each lookup here carries 2,000 hashes (140 kB), which
    would hold tens of MB in a long import. Django clears the log per request; a job clears it per batch."""
    if settings.DEBUG:
        reset_queries()


def _mark_existing(project: Project, pending: list[tuple[int, str]], in_project: bytearray,
                   examples: dict[int, int]) -> None:
    if not pending:
        return
    # Served by the index item_project_hash (project_id, content_hash).
    found = dict(Item.objects.filter(project=project, content_hash__in={h for _, h in pending})
                 .values_list("content_hash", "id"))
    for index, h in pending:
        if h in found:
            in_project[index] = 1
            if len(examples) < MAX_DUPLICATE_EXAMPLES:
                examples[index] = found[h]


def _find_duplicates(report, keys: array, row_numbers: array, in_project: bytearray, project_examples: dict,
                     *, skip: bool) -> None:
    """Mark later repeats of a text within the file and texts already in the project.

    Sorting the 8-byte keys finds repeats without a set of a million strings; memory stays a few bytes per row even
    when every row is a duplicate (the same file uploaded twice).
    """
    k = np.frombuffer(keys, dtype=np.uint64)
    order = np.argsort(k, kind="stable")
    sorted_keys = k[order]
    repeat = np.zeros(len(k), dtype=bool)
    np.equal(sorted_keys[1:], sorted_keys[:-1], out=repeat[1:])
    del sorted_keys
    group_starts = np.flatnonzero(~repeat)  # sorted positions where a run of equal keys begins
    repeat_positions = np.flatnonzero(repeat)
    duplicate = np.frombuffer(in_project, dtype=np.uint8).astype(bool)
    duplicate[order[repeat_positions]] = True
    report.duplicates = int(duplicate.sum())
    report.skip = bytearray(duplicate.astype(np.uint8).tobytes()) if skip else bytearray()
    examples = np.flatnonzero(duplicate)[:MAX_DUPLICATE_EXAMPLES]
    first_of = {}  # example row index -> row index of the first occurrence of its text in the file
    for pos in repeat_positions[np.isin(order[repeat_positions], examples)]:
        start = group_starts[np.searchsorted(group_starts, pos, side="right") - 1]
        first_of[int(order[pos])] = int(order[start])
    for index in examples.tolist():
        repeats = f"row {row_numbers[first_of[index]]}" if index in first_of else f"item #{project_examples[index]}"
        report.duplicate_rows.append({"row": row_numbers[index], "duplicate_of": repeats})


# --- Pass 2: write ---------------------------------------------------------------------------------------------------

def import_rows(*, project: Project, path: Path, options: ImportOptions, skip: bytearray) -> Iterator[ImportRow]:
    """The validated rows again, minus the duplicates ``skip`` marks; a row that fails now means the file changed."""
    parser = RowParser(project=project, options=options)
    for index, (row, record) in enumerate(iter_records(path, options)):
        if skip and skip[index]:
            continue
        parsed = None if isinstance(record, list) else parser.parse(row, record)
        if not isinstance(parsed, ImportRow):
            raise ImportFailed(f"Row {row} changed since it was checked; import the file again.", row=row)
        yield parsed


@transaction.atomic
def items_import(
    *, project: Project, rows: Iterable[ImportRow], job_id: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Create an Item per row, in batches, in one transaction; returns the count.

    A row with final labels is a human-verified seed (``accepted``); otherwise the item is ``proposed``. With a
    ``job_id`` every item gets the idempotency key ``import<job>:<row>`` and ``provenance`` naming job and row, so
    running the same job twice cannot store a row twice (the second run fails on the unique key and rolls back).
    """
    constant = {"project_id": project.pk, "source": Source.IMPORTED}
    written, batch = 0, []
    for row in rows:
        batch.append(_item_values(row, job_id))
        if len(batch) >= BATCH:
            written += sql.rows_insert(model=Item, rows=batch, constant=constant)
            batch = []
            if on_progress and written % PROGRESS_EVERY < BATCH:
                on_progress(written)
    written += sql.rows_insert(model=Item, rows=batch, constant=constant)
    return written


def _item_values(row: ImportRow, job_id: int | None) -> dict:
    status = Status.ACCEPTED if row.final_labels else Status.PROPOSED
    return {
        "text": row.text, "extra": row.extra, "status": status,
        "proposed_labels": row.proposed_labels, "llm_confidence": row.llm_confidence,
        "final_labels": row.final_labels,
        "provenance": {"import_job": job_id, "row": row.row} if job_id is not None else row.provenance,
        "idempotency_key": f"import{job_id}:{row.row}" if job_id is not None else None,
        "content_hash": content_digest(row.text).hex(),
    }


# --- The job ---------------------------------------------------------------------------------------------------------

def upload_path(job: ImportJob) -> Path:
    return Path(settings.MEDIA_ROOT) / UPLOAD_DIR / f"{job.pk}-{Path(job.file_name).name}"


def import_job_create(*, project: Project, user, file_name: str, options: ImportOptions,
                      source_path: Path | None = None, upload=None) -> ImportJob:
    """Record an import of an upload or of a local file.

    An upload is saved under MEDIA_ROOT/imports/ and queued for the Celery task ``annotation.import_items`` once the
    transaction commits. A local file (``source_path``: the command) is read in place, so the caller runs the job
    itself with ``import_job_run``: a worker on another machine could not read it.
    """
    from annotation.io import tasks  # tasks imports this module

    if (source_path is None) == (upload is None):
        raise TypeError("import_job_create takes either source_path or upload")
    job = ImportJob.objects.create(project=project, created_by=user, file_name=Path(file_name).name[:255],
                                   format=options.format, options=options.to_dict())
    path = source_path or upload_path(job)
    if upload is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    job.file_path = str(path)
    job.save(update_fields=["file_path"])
    if upload is not None:
        tasks.import_items.delay_on_commit(job.pk)
    return job


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Validate and write one queued import; safe to call twice (the second call finds the job claimed).

    The job's process lock is taken before the claim and kept to the end, so a job that is running always has a live
    holder, and ``import_jobs_reap`` can tell a dead run from a live one.
    """
    with sql.process_lock(name=RUN_LOCK, key=job_id) as held:
        claimed = held and ImportJob.objects.filter(pk=job_id, state=ImportJob.State.QUEUED).update(
            state=ImportJob.State.VALIDATING)
        return _run(job_id) if claimed else None


def _run(job_id: int) -> ImportJob:
    job = ImportJob.objects.select_related("project", "created_by").get(pk=job_id)
    jobs = ImportJob.objects.filter(pk=job_id)
    path = Path(job.file_path)
    try:
        options = ImportOptions(**job.options)
        report = import_validate(project=job.project, path=path, options=options,
                                 on_progress=lambda n: jobs.update(rows_total=n))
        if report.n_errors:
            jobs.update(state=ImportJob.State.FAILED, rows_total=report.rows, errors=report.error_list(),
                        finished_at=timezone.now())
            return _refresh(job)
        jobs.update(state=ImportJob.State.IMPORTING, rows_total=report.rows, duplicates=report.duplicates,
                    duplicate_rows=report.duplicate_rows)
        with transaction.atomic():
            with sql.side_writer(model=ImportJob, pk=job_id, field="rows_done") as progress:
                written = items_import(
                    project=job.project, job_id=job.pk, on_progress=progress,
                    rows=import_rows(project=job.project, path=path, options=options, skip=report.skip),
                )
            if written >= ANALYZE_AFTER_ROWS:
                # With stale statistics the planner takes a project's new rows for a handful and picks plans (a sort
                # of every row per keyset page) that are fatal at this size; autovacuum would get there, but not
                # before the lead's first export or queue page.
                sql.statistics_refresh(model=Item)
            jobs.update(state=ImportJob.State.DONE, rows_done=report.rows, rows_imported=written,
                        finished_at=timezone.now())
            if written:
                # New items wait as ``proposed`` until a scoring round routes them (to review, or auto-accepted);
                # queued once this transaction commits, debounced per project like every other request.
                selection_request_round(job.project_id, force=True)
    except ImportFailed as exc:
        jobs.update(state=ImportJob.State.FAILED, finished_at=timezone.now(),
                    errors=[{"row": exc.row, "field": exc.field, "message": str(exc)}])
    except Exception:
        message = "The import stopped on an internal error; nothing was stored. The error is in the worker log."
        jobs.update(state=ImportJob.State.FAILED, finished_at=timezone.now(),
                    errors=[{"row": None, "field": "", "message": message}])
        raise
    finally:
        _remove_upload(path)
        _finished_publish(job_id)
    return _refresh(job)


def import_jobs_reap(*, project: Project) -> int:
    """Mark failed the project's imports whose worker died mid-run; returns how many.

    A running job whose process lock nobody holds has lost its worker: the transaction of its items died with the
    worker (items and "done" commit together), so nothing was stored, and the upload is deleted. Called when the
    import pages are read, which is when anyone looks; a job that merely waits in the queue is left alone.
    """
    reaped = 0
    for pk, file_path in ImportJob.objects.filter(project=project, state__in=RUNNING).values_list("pk", "file_path"):
        if sql.process_lock_held(name=RUN_LOCK, key=pk):
            continue
        if ImportJob.objects.filter(pk=pk, state__in=RUNNING).update(
            state=ImportJob.State.FAILED, finished_at=timezone.now(),
            errors=[{"row": None, "field": "", "message": WORKER_LOST}],
        ):
            reaped += 1
            _remove_upload(Path(file_path))
            _finished_publish(pk)
    return reaped


def _finished_publish(job_id: int) -> None:
    """Announce ``import.finished`` (annotation/events.py) for a job that ended, done or failed."""
    job = ImportJob.objects.filter(pk=job_id, state__in=(ImportJob.State.DONE, ImportJob.State.FAILED)).first()
    if job is not None:
        event_publish(project_id=job.project_id, event="import.finished", data={
            "import_job": job.pk, "state": job.state, "file_name": job.file_name, "rows_total": job.rows_total,
            "rows_imported": job.rows_imported, "duplicates": job.duplicates, "errors": len(job.errors or []),
            "finished_at": job.finished_at})


def _refresh(job: ImportJob) -> ImportJob:
    job.refresh_from_db()
    return job


def _remove_upload(path: Path) -> None:
    """Uploads are deleted once imported or failed; a file imported from the command line is left alone."""
    uploads = (Path(settings.MEDIA_ROOT) / UPLOAD_DIR).resolve()
    if path.resolve().parent == uploads:
        path.unlink(missing_ok=True)


# --- Items from a list (the API's bulk create) -----------------------------------------------------------------------

MAX_BULK_ITEMS = 10_000


@dataclass
class BulkResult:
    """What ``items_bulk_create`` did; ``errors`` and ``duplicate_rows`` name the list index of each record (0-based),
    so with errors nothing was stored."""

    created: int = 0
    duplicates: int = 0
    errors: list[dict] = field(default_factory=list)
    duplicate_rows: list[dict] = field(default_factory=list)


def items_bulk_create(*, project: Project, records: list[dict], options: ImportOptions) -> BulkResult:
    """Create items from JSON objects with the import's row checks and duplicate rules, all or nothing.

    Each record is what a JSONL line holds (``options`` maps its keys; the rest go to ``Item.extra``). Every record is
    checked first; a problem is reported with the record's index (0-based) and nothing is written. Duplicates (same
    text ignoring case and spacing, within the list or already in the project) are skipped or kept as ``options``
    says. The items are written in one transaction and a scoring round is queued, as an import does.
    """
    if len(records) > MAX_BULK_ITEMS:
        raise ImportFailed(f"At most {MAX_BULK_ITEMS} items per request; this one has {len(records)}.")
    if not records:
        raise ImportFailed("The list has no items to create.")
    parser = RowParser(project=project, options=options)
    result, rows = BulkResult(), []
    for index, record in enumerate(records):
        nul = [k for k, v in record.items() if _has_nul(k) or _has_nul(v)]
        parsed = [RowProblem(index, name, NUL_REASON) for name in nul] or parser.parse(index, record)
        if isinstance(parsed, list):
            if len(result.errors) < MAX_ERRORS:
                result.errors.extend({"index": p.row, "field": _storable(p.field), "message": _storable(p.message)}
                                     for p in parsed[:MAX_ERRORS - len(result.errors)])
            continue
        parsed.provenance = {"api_bulk": True, "index": index}
        rows.append(parsed)
    if result.errors:
        return result
    hashes = [content_digest(row.text).hex() for row in rows]
    existing = {}
    for start in range(0, len(hashes), BATCH):
        chunk = set(hashes[start:start + BATCH])
        existing.update(Item.objects.filter(project=project, content_hash__in=chunk).values_list("content_hash", "id"))
    seen: dict[str, int] = {}
    keep = []
    for row, digest in zip(rows, hashes):
        repeats = f"index {seen[digest]}" if digest in seen else (
            f"item #{existing[digest]}" if digest in existing else None)
        seen.setdefault(digest, row.row)
        if repeats is None:
            keep.append(row)
            continue
        result.duplicates += 1
        if len(result.duplicate_rows) < MAX_DUPLICATE_EXAMPLES:
            result.duplicate_rows.append({"index": row.row, "duplicate_of": repeats})
        if options.duplicates == "keep":
            keep.append(row)
    with transaction.atomic():
        result.created = items_import(project=project, rows=keep)
        if result.created:
            selection_request_round(project.pk, force=True)
    return result
