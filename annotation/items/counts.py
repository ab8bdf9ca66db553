"""Exact item counts per project and status, and by source, labelling and scoring, without reading the items: the sums
of ``ItemCount`` rows, which database triggers keep in the same transaction as every item write (the model's docstring
says why triggers and how), and the reconciliation that recounts the items, corrects any drift and reports it.

Like ``synthstudio/lib/sql.py`` this module holds per-database SQL, for this one table: PostgreSQL folds a project's
delta rows with one ``DELETE ... RETURNING`` statement (the same function the triggers call); SQLite, one writer at a
time, folds under its write lock.
"""
import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Sum

from annotation.models import Item, ItemCount, Project, Status

log = logging.getLogger(__name__)

_COUNTS = ItemCount._meta.db_table
_ITEMS = Item._meta.db_table
# What each counter dimension means for an item row, as the triggers of migration 0018 compute it (the recount uses
# these; a difference between the two would show as drift in the tests): source imported, an LLM proposal, a score.
_DIMENSIONS = ("imported", "labelled", "scored")
_ITEM_DIMENSIONS = ("source = 'imported' AS imported, proposed_labels <> '[]' AS labelled, "
                    "ambiguity IS NOT NULL AS scored")
# One counter cell: (status, imported, labelled, scored).
Cell = tuple[str, bool, bool, bool]


def item_counts(*, project_id: int) -> dict[str, int]:
    """Live (not archived) items of the project per status, every status present; one indexed read of a few rows."""
    rows = dict(
        ItemCount.objects.filter(project_id=project_id).order_by().values_list("status")
        .annotate(total=Sum("n")).values_list("status", "total")
    )
    counts = {status: 0 for status in Status.values}
    counts.update({status: int(total) for status, total in rows.items() if status in counts})
    return counts


@dataclass(frozen=True)
class ItemCounts:
    """Live items of one project in each counter cell (status, imported, labelled, scored), from one read."""

    cells: dict[Cell, int]

    def count(self, *, status: str | None = None, imported: bool | None = None, labelled: bool | None = None,
              scored: bool | None = None) -> int:
        """Items with every value given (None: any): ``count(labelled=False, status="proposed")``."""
        wanted = (status, imported, labelled, scored)
        return sum(n for cell, n in self.cells.items()
                   if all(want is None or want == have for want, have in zip(wanted, cell, strict=True)))

    @property
    def by_status(self) -> dict[str, int]:
        """What ``item_counts`` returns: every status present."""
        counts = dict.fromkeys(Status.values, 0)
        for (status, *_), n in self.cells.items():
            if status in counts:
                counts[status] += n
        return counts

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def item_counts_detail(*, project_id: int) -> ItemCounts:
    """Live items of the project per status and by source, LLM proposal and routing score (the project overview's
    pipeline counts); one indexed read of a few dozen rows, whatever the project's size."""
    rows = (ItemCount.objects.filter(project_id=project_id).order_by().values_list("status", *_DIMENSIONS)
            .annotate(total=Sum("n")).values_list("status", *_DIMENSIONS, "total"))
    return ItemCounts(cells={(status, bool(imported), bool(labelled), bool(scored)): int(total)
                             for status, imported, labelled, scored, total in rows if total})


@dataclass(frozen=True)
class Drift:
    """The counters said ``counted`` items of ``status`` (imported or not, labelled or not, scored or not) in
    ``project_id`` where a recount found ``actual``."""

    project_id: int
    status: str
    imported: bool
    labelled: bool
    scored: bool
    counted: int
    actual: int

    def __str__(self):
        kind = ", ".join((("imported" if self.imported else "not imported"),
                          ("labelled" if self.labelled else "unlabelled"), ("scored" if self.scored else "unscored")))
        return (f"project {self.project_id}, {self.status} ({kind}): counted {self.counted}, recounted {self.actual} "
                f"({self.actual - self.counted:+d})")


def item_counts_fold(*, project_id: int) -> None:
    """Replace the project's delta rows by one row per counter cell with their sum. Never waits for another fold: on
    PostgreSQL one that cannot take the project's try-lock does nothing."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT annotation_itemcount_fold(%s)", [project_id])
            return
        # SQLite: this transaction holds the write lock from its start (transaction_mode IMMEDIATE), so nothing
        # writes between the sums and the delete.
        cells = ", ".join(("status", *_DIMENSIONS))
        cursor.execute(f"SELECT {cells}, sum(n) FROM {_COUNTS} WHERE project_id = %s GROUP BY {cells}", [project_id])
        sums = sorted(row for row in cursor.fetchall() if row[-1])
        cursor.execute(f"DELETE FROM {_COUNTS} WHERE project_id = %s", [project_id])
        ItemCount.objects.bulk_create(ItemCount(project_id=project_id, status=status, imported=imported,
                                                labelled=labelled, scored=scored, n=total)
                                      for status, imported, labelled, scored, total in sums)


def item_counts_reconcile(*, project_id: int | None = None) -> list[Drift]:
    """Recount the items of one project (or of every project) per counter cell, correct the counters where they
    drifted, fold each project's rows, and return the drift found (empty when the counters were right); each drift is
    logged as a warning. Rows of projects that no longer exist are removed.

    The recount and the counters' sums are read in one statement, so they see one snapshot, in which every item
    change and its delta rows are committed together or not at all. The correction is a delta row too, so writes
    committed after that snapshot neither race with it nor are lost.
    """
    ids = [project_id] if project_id is not None else list(Project.objects.order_by("id").values_list("id", flat=True))
    drift: list[Drift] = []
    for pk in ids:
        found = _recount(pk)
        if found:
            ItemCount.objects.bulk_create(ItemCount(project_id=pk, status=d.status, imported=d.imported,
                                                    labelled=d.labelled, scored=d.scored, n=d.actual - d.counted)
                                          for d in found)
            for d in found:
                log.warning("Item counts drifted: %s; corrected.", d)
        item_counts_fold(project_id=pk)
        drift += found
    if project_id is None:
        ItemCount.objects.exclude(project_id__in=Project.objects.values("id")).delete()
    return drift


def _recount(project_id: int) -> list[Drift]:
    cells = ", ".join(("status", *_DIMENSIONS))
    sql = (f"SELECT {cells}, sum(actual), sum(counted) FROM ("
           f"SELECT status, {_ITEM_DIMENSIONS}, count(*) AS actual, 0 AS counted FROM {_ITEMS} "
           f"WHERE project_id = %s AND archived_at IS NULL GROUP BY 1, 2, 3, 4 "
           f"UNION ALL SELECT {cells}, 0 AS actual, sum(n) AS counted FROM {_COUNTS} WHERE project_id = %s "
           f"GROUP BY {cells}) AS both_sides "
           f"GROUP BY {cells} ORDER BY {cells}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id, project_id])
        rows = cursor.fetchall()
    return [Drift(project_id, status, bool(imported), bool(labelled), bool(scored), int(counted), int(actual))
            for status, imported, labelled, scored, actual, counted in rows if int(actual) != int(counted)]
