"""Exact item counts per project and status without reading the items: the sums of ``ItemCount`` rows, which database
triggers keep in the same transaction as every item write (the model's docstring says why triggers and how), and the
reconciliation that recounts the items, corrects any drift and reports it.

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
class Drift:
    """The counters said ``counted`` items of ``status`` in ``project_id`` where a recount found ``actual``."""

    project_id: int
    status: str
    counted: int
    actual: int

    def __str__(self):
        return (f"project {self.project_id}, {self.status}: counted {self.counted}, recounted {self.actual} "
                f"({self.actual - self.counted:+d})")


def item_counts_fold(*, project_id: int) -> None:
    """Replace the project's delta rows by one row per status with their sum. Never waits for another fold: on
    PostgreSQL one that cannot take the project's try-lock does nothing."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT annotation_itemcount_fold(%s)", [project_id])
            return
        # SQLite: this transaction holds the write lock from its start (transaction_mode IMMEDIATE), so nothing
        # writes between the sums and the delete.
        cursor.execute(f"SELECT status, sum(n) FROM {_COUNTS} WHERE project_id = %s GROUP BY status", [project_id])
        sums = [(status, total) for status, total in cursor.fetchall() if total]
        cursor.execute(f"DELETE FROM {_COUNTS} WHERE project_id = %s", [project_id])
        ItemCount.objects.bulk_create(ItemCount(project_id=project_id, status=s, n=t) for s, t in sorted(sums))


def item_counts_reconcile(*, project_id: int | None = None) -> list[Drift]:
    """Recount the items of one project (or of every project), correct the counters where they drifted, fold each
    project's rows, and return the drift found (empty when the counters were right); each drift is logged as a
    warning. Rows of projects that no longer exist are removed.

    The recount and the counters' sums are read in one statement, so they see one snapshot, in which every item
    change and its delta rows are committed together or not at all. The correction is a delta row too, so writes
    committed after that snapshot neither race with it nor are lost.
    """
    ids = [project_id] if project_id is not None else list(Project.objects.order_by("id").values_list("id", flat=True))
    drift: list[Drift] = []
    for pk in ids:
        found = _recount(pk)
        if found:
            ItemCount.objects.bulk_create(ItemCount(project_id=pk, status=d.status, n=d.actual - d.counted)
                                          for d in found)
            for d in found:
                log.warning("Item counts drifted: %s; corrected.", d)
        item_counts_fold(project_id=pk)
        drift += found
    if project_id is None:
        ItemCount.objects.exclude(project_id__in=Project.objects.values("id")).delete()
    return drift


def _recount(project_id: int) -> list[Drift]:
    sql = (f"SELECT status, sum(actual), sum(counted) FROM ("
           f"SELECT status, count(*) AS actual, 0 AS counted FROM {_ITEMS} "
           f"WHERE project_id = %s AND archived_at IS NULL GROUP BY status "
           f"UNION ALL SELECT status, 0 AS actual, sum(n) AS counted FROM {_COUNTS} WHERE project_id = %s "
           f"GROUP BY status) AS both_sides GROUP BY status ORDER BY status")
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id, project_id])
        rows = cursor.fetchall()
    return [Drift(project_id, status, int(counted), int(actual)) for status, actual, counted in rows
            if int(actual) != int(counted)]
