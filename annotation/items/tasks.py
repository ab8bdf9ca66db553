"""Celery tasks of the item package: thin wrappers that call one function of annotation/items/counts.py."""
from celery import shared_task

from annotation.items.counts import item_counts_reconcile


@shared_task(name="annotation.item_counts_reconcile")
def item_counts_reconcile_task(project_id: int | None = None) -> dict:
    """Recount items, correct the per-status counters where they drifted (logged as warnings) and report it. Safe to
    run twice or alongside any writer: a correction is a delta against one consistent snapshot."""
    drift = item_counts_reconcile(project_id=project_id)
    return {"projects": "all" if project_id is None else project_id, "drifted": len(drift),
            "drift": [str(d) for d in drift]}
