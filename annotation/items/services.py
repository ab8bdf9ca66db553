"""Item changes and their audit log: every change of an item's status, labels or text goes through here.

``item_transition`` checks the state machine on ``Item``, bumps the version and appends a ``Review`` row in the same
transaction. Imports create items in bulk (``annotation/io/importing.py``); creating an item overwrites nothing.
"""
import hashlib

from django.utils import timezone

from annotation.errors import ServiceError, StaleItem  # noqa: F401 - re-exported for callers of the item services
from annotation.models import Item, Project, Review, Status


def item_snapshot(item: Item) -> dict:
    return {
        "status": item.status,
        "text": item.text,
        "labels": list(item.final_labels or item.proposed_labels),
        "version": item.version,
    }


def item_transition(
    *,
    item: Item,
    to: str,
    action: str,
    user=None,
    reason: str = "",
    note: str = "",
    final_labels: list[str] | None = None,
    text: str | None = None,
    time_spent_ms: int | None = None,
) -> Review:
    """Move one item to a new status (checked by the state machine) and log it; the caller holds the transaction."""
    before = item_snapshot(item)
    item.move_to(to)
    fields = ["status", "version", "updated_at"]
    if final_labels is not None:
        item.final_labels = final_labels
        fields.append("final_labels")
    if text is not None and text != item.text:
        item.text = text
        item.content_hash = ""  # recomputed by Item.save
        fields += ["text", "content_hash"]
    if to in (Status.ACCEPTED, Status.REJECTED):
        item.reviewed_at = timezone.now()
        fields.append("reviewed_at")
    item.save(update_fields=fields)
    return Review.objects.create(
        item=item,
        project_id=item.project_id,
        user=user,
        action=action,
        before=before,
        after=item_snapshot(item),
        reason=reason,
        note=note,
        time_spent_ms=time_spent_ms,
        is_audit=item.is_audit,
    )


def items_apply_overlap(*, project: Project, item_ids: list[int]) -> int:
    """Ask ``overlap_k`` reviews for a stable share (``overlap_rate``) of these items; returns how many were marked.

    The share is chosen by a hash of project and item id, so running it twice marks the same items. Only items
    waiting for their first review are touched.
    """
    if project.overlap_rate <= 0 or project.overlap_k < 2:
        return 0
    chosen = [pk for pk in item_ids if _overlap_draw(project.pk, pk) < project.overlap_rate]
    return Item.objects.filter(
        pk__in=chosen, project=project, status=Status.NEEDS_REVIEW, review_count=0, reviews_required=1
    ).update(reviews_required=project.overlap_k)


def _overlap_draw(project_id: int, item_id: int) -> float:
    digest = hashlib.sha256(f"overlap:{project_id}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
