"""Reads for the import and export pages: a project's recent import jobs and one of them; what an export will hold."""
from dataclasses import dataclass, replace

from django.db.models import Count
from django.shortcuts import get_object_or_404

from annotation.io.exporting import ExportFilters, export_queryset, verified_statuses
from annotation.items.counts import item_counts
from annotation.models import ImportJob, Project, Status

RECENT_JOBS = 10
# An import in one of these states is still under way: its pages refresh themselves until it leaves them.
IMPORT_ACTIVE = (ImportJob.State.QUEUED, ImportJob.State.VALIDATING, ImportJob.State.IMPORTING)


def import_jobs_recent(*, project: Project, limit: int = RECENT_JOBS) -> list[ImportJob]:
    return list(ImportJob.objects.filter(project=project).select_related("created_by")[:limit])


def import_job_get(*, project: Project, job_id: int) -> ImportJob:
    """The import job, or 404 when it belongs to another project."""
    return get_object_or_404(ImportJob, pk=job_id, project=project)


# The statuses in the words the export page uses.
EXPORT_STATUS_WORDS = {
    Status.ACCEPTED: "Accepted by a person",
    Status.AUTO_ACCEPTED: "Auto-accepted",
    Status.NEEDS_REVIEW: "Waiting for review",
    Status.PROPOSED: "Waiting for routing",
    Status.REJECTED: "Rejected",
    Status.FILTERED: "Held back by filters",
}


@dataclass(frozen=True)
class ExportRowCount:
    status: str
    words: str
    n: int
    verified: bool
    included: bool


@dataclass(frozen=True)
class ExportSummary:
    """What an export with these filters holds, by status, and whether each status counts as verified. With a label
    filter the counts are those before it (it is applied while the file is written): ``label_pending`` says so."""

    rows: list[ExportRowCount]
    label_pending: bool

    @property
    def included(self) -> int:
        return sum(r.n for r in self.rows if r.included)

    @property
    def included_verified(self) -> int:
        return sum(r.n for r in self.rows if r.included and r.verified)

    @property
    def included_unverified(self) -> int:
        return self.included - self.included_verified

    @property
    def left_out(self) -> int:
        return sum(r.n for r in self.rows if not r.included)


def export_summary(*, project: Project, filters: ExportFilters) -> ExportSummary:
    """Per status: the per-status counters (annotation/items/counts.py), or with a source or date filter one GROUP BY
    status over the items those select; the verified and status choices then decide which of those rows the file
    holds."""
    verified = set(verified_statuses(project))
    if filters.source or filters.created_from or filters.created_to:
        base = export_queryset(project=project, filters=replace(filters, statuses=(), verified_only=False, label=""))
        counts = dict(base.values_list("status").annotate(n=Count("id")).order_by())
    else:  # no filter but the status: the per-status counters, without reading the items
        counts = item_counts(project_id=project.pk)
    rows = []
    for status, words in EXPORT_STATUS_WORDS.items():
        included = ((not filters.statuses or status in filters.statuses)
                    and (not filters.verified_only or status in verified))
        rows.append(ExportRowCount(status=status, words=words, n=counts.get(status, 0), verified=status in verified,
                                   included=included))
    return ExportSummary(rows=rows, label_pending=bool(filters.label))
