"""Item changes and their audit log: every change of an item's status, labels or text, and every Review row, is
written here (``tests/system/test_audit_log_owner.py`` scans the code for writes anywhere else).

- ``item_transition`` changes one item (a review, an undo, a second opinion) and appends its Review row;
- ``items_change`` is the same for writers that change many items at once (routing in scoring rounds, label renames
  and merges, a labelling job's new proposals): it locks the rows, lets the caller decide per row from what it reads
  under the lock, and writes one ``UPDATE ... FROM (VALUES ...)`` and one Review INSERT per batch;
- ``item_log`` and ``items_log_created`` append a row for an action that changes nothing (a skip) or for how an
  item was born (a generated item the filters held back).

All of them log the snapshot of ``item_snapshot``, the shape the ``Review`` model documents. Creating items (imports,
generation) overwrites nothing and happens where they are built.
"""
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.errors import ServiceError, StaleItem  # noqa: F401 - re-exported for callers of the item services
from annotation.models import Item, Project, Review, Status
from synthstudio.lib.draws import stable_draw
from synthstudio.lib.sql import rows_update

# Audited fields: written only through this module, each write with a Review row.
AUDITED = ("status", "text", "final_labels", "proposed_labels")
# What ``items_change`` reads of each locked row, besides the columns a caller names in ``read``.
_LOCKED = ("id", "project_id", "status", "text", "final_labels", "proposed_labels", "version", "is_audit",
           "claimed_by_id", "lease_expires_at", "review_count")
# Rows per locking SELECT, UPDATE and INSERT: 2,000 rows of ~12 columns stay under SQLite's 32,766 parameters.
CHANGE_BATCH = 2000


def item_snapshot(item: Item) -> dict:
    """The state an audit row records (see ``Review``): labels are what the item stands for, final or proposed."""
    return {
        "status": item.status,
        "text": item.text,
        "labels": list(item.final_labels or item.proposed_labels),
        "version": item.version,
    }


def _review(item: Item, *, action: str, before: dict, after: dict, user=None, reason: str = "", note: str = "",
            time_spent_ms: int | None = None) -> Review:
    return Review(item_id=item.pk, project_id=item.project_id, user=user, action=action, before=before, after=after,
                  reason=reason, note=note, time_spent_ms=time_spent_ms, is_audit=item.is_audit)


def item_transition(
    *,
    item: Item,
    action: str,
    to: str | None = None,
    user=None,
    reason: str = "",
    note: str = "",
    final_labels: list[str] | None = None,
    text: str | None = None,
    time_spent_ms: int | None = None,
    second_opinion: bool = False,
) -> Review:
    """Change one item, bump its version and log it; the caller holds the transaction (and the row, if it raced).

    ``to`` moves the status along the state machine (None keeps it); ``final_labels`` and ``text`` replace the item's.
    With ``second_opinion`` only the version moves: ``to``, ``final_labels`` and ``text`` are an overlap reviewer's
    own verdict, logged as ``after`` (marked ``second_opinion``) while the item keeps the first review's decision.
    """
    before = item_snapshot(item)
    if second_opinion:
        item.version += 1
        item.save(update_fields=["version", "updated_at"])
        verdict = {"status": to, "text": text if text is not None else item.text, "labels": list(final_labels or []),
                   "version": item.version, "second_opinion": True}
        review = _review(item, action=action, before=before, after=verdict, user=user, reason=reason, note=note,
                         time_spent_ms=time_spent_ms)
        review.save(force_insert=True)
        return review
    fields = ["version", "updated_at"]
    if to is None:
        item.version += 1
    else:
        item.move_to(to)
        fields.append("status")
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
    review = _review(item, action=action, before=before, after=item_snapshot(item), user=user, reason=reason,
                     note=note, time_spent_ms=time_spent_ms)
    review.save(force_insert=True)
    return review


def item_log(*, item: Item, action: str, user=None, note: str = "", time_spent_ms: int | None = None) -> Review:
    """Log an action that changes nothing of the item (a skip): ``before`` and ``after`` are the same snapshot."""
    snapshot = item_snapshot(item)
    review = _review(item, action=action, before=snapshot, after=snapshot, user=user, note=note,
                     time_spent_ms=time_spent_ms)
    review.save(force_insert=True)
    return review


def items_log_created(*, action: str, entries: Iterable[tuple[Item, str, str]]) -> None:
    """Log how freshly created items were born, one row per (item, reason, note); ``before`` is ``{}``."""
    Review.objects.bulk_create(
        _review(item, action=action, before={}, after=item_snapshot(item), reason=reason[:32], note=note)
        for item, reason, note in entries
    )


@dataclass
class ItemChange:
    """What ``items_change`` writes to one item: a status move, new labels and other columns, logged as ``action``."""

    action: str
    to: str | None = None
    final_labels: list[str] | None = None
    proposed_labels: list[str] | None = None
    # Columns that go with the change and need no audit of their own (scores, routing reason, votes, provenance).
    fields: dict = field(default_factory=dict)
    note: str = ""
    reason: str = ""

    def __post_init__(self):
        audited = set(self.fields) & {*AUDITED, "version"}
        if audited:
            raise ValueError(f"ItemChange.fields cannot write {', '.join(sorted(audited))}; use its own arguments.")


def items_change(
    *,
    project_id: int,
    item_ids: Iterable[int],
    decide: Callable[[Item], ItemChange | None],
    user=None,
    read: Iterable[str] = (),
    skip_held: bool = False,
) -> list[Item]:
    """Change many items of one project, each with its Review row; returns the changed items as written.

    The rows are locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write lock is the transaction's) in id
    order, in batches of ``CHANGE_BATCH``, and ``decide`` is called with each row as it is now: it returns the change
    or None to leave the row alone (a version that moved, a reviewer's claim...). It must not modify the item. Only the
    columns of ``_LOCKED`` and ``read`` are loaded. Each batch is written with one UPDATE per set of changed columns
    and one INSERT of Review rows; every change bumps the version. The caller's transaction, if any, holds the locks
    until it ends, so the caller may write more to the same rows (unaudited columns) under them.

    With ``skip_held`` the rows a reviewer holds now (claimed, lease not expired) are neither locked nor passed to
    ``decide``: a writer that would leave them alone anyway (routing) then holds no lock that the reviewer's save or
    lease renewal would wait for while the batch's transaction lasts (measured with a scoring round beside 16
    annotators: bench/RESULTS.md, "Tail under contention").
    """
    ids = sorted(set(item_ids))
    columns = list(dict.fromkeys([*_LOCKED, *read]))
    changed: list[Item] = []
    now = timezone.now()
    with transaction.atomic():
        for start in range(0, len(ids), CHANGE_BATCH):
            rows = (Item.objects.select_for_update().filter(project_id=project_id, pk__in=ids[start:start + CHANGE_BATCH])
                    .only(*columns).order_by("id"))
            if skip_held:
                rows = rows.filter(Q(claimed_by__isnull=True) | Q(lease_expires_at__isnull=True)
                                   | Q(lease_expires_at__lt=now))
            groups: dict[tuple[str, ...], list[Item]] = {}
            reviews = []
            for item in rows:
                change = decide(item)
                if change is None:
                    continue
                before = item_snapshot(item)
                written = _apply(item, change, now)
                groups.setdefault(written, []).append(item)
                reviews.append(_review(item, action=change.action, before=before, after=item_snapshot(item),
                                       user=user, reason=change.reason[:32], note=change.note))
            for written, items in groups.items():
                rows_update(model=Item, objs=items, fields=list(written))
                changed += items
            Review.objects.bulk_create(reviews)
    return changed


def _apply(item: Item, change: ItemChange, now) -> tuple[str, ...]:
    """Apply the change to the instance in memory; returns the columns to write."""
    written = ["version", "updated_at"]
    if change.to is None:
        item.version += 1
    else:
        item.move_to(change.to)  # checks the state machine and bumps the version
        written.append("status")
    if change.final_labels is not None:
        item.final_labels = change.final_labels
        written.append("final_labels")
    if change.proposed_labels is not None:
        item.proposed_labels = change.proposed_labels
        written.append("proposed_labels")
    for name, value in change.fields.items():
        setattr(item, name, value)
    item.updated_at = now
    return (*written, *change.fields)


def items_apply_overlap(*, project: Project, item_ids: list[int]) -> int:
    """Ask ``overlap_k`` reviews for a stable share (``overlap_rate``) of these items; returns how many were marked.

    The share is chosen by a hash of project and item id, so running it twice marks the same items. Only items
    waiting for their first review are touched.
    """
    if project.overlap_rate <= 0 or project.overlap_k < 2:
        return 0
    chosen = [pk for pk in item_ids if stable_draw("overlap", project.pk, pk) < project.overlap_rate]
    return Item.objects.filter(
        pk__in=chosen, project=project, status=Status.NEEDS_REVIEW, review_count=0, reviews_required=1
    ).update(reviews_required=project.overlap_k)
