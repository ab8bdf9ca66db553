"""Writes to a project's set-up: its settings, label schema and attribute dimensions.

Items store label *names* (``proposed_labels``, ``final_labels``, ``llm_votes`` keys, ``model_label``), so a label that
items use cannot simply disappear: renaming or merging it rewrites those items here, in batches, bumping each item's
version and appending a ``relabel`` Review row, and deleting a label in use is refused.

Changes to one project's labels and dimensions take turns (``_lock_schema``), and a change re-reads its label once it
has its turn: a rename or merge started from a label another lead renamed, merged or deleted meanwhile is refused,
since the items it would rewrite no longer carry the name it read (``selectors.project_items_with_unknown_labels``
checks that none carries a name the schema lacks).
"""
import re
import zlib
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Max

from annotation.items.services import ItemChange, ServiceError, items_change
from annotation.models import (
    RESERVED_HOTKEYS,
    AttributeDimension,
    Item,
    Label,
    Project,
    ReviewAction,
)

# Label names may not contain the separator of the joined multi-label cell in CSV files (annotation/io/exporting.py).
LABEL_SEPARATOR = "|"
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
# Items are rewritten in batches of this size, so a merge in a big project holds few rows in memory at once.
RELABEL_BATCH = 2000

# The first key of the PostgreSQL advisory lock of a project's schema (the second is the project's id).
SCHEMA_LOCK_SPACE = zlib.crc32(b"synthstudio.label_schema") - 2**31

PROJECT_FIELDS = (
    "name", "description", "guidelines", "multi_label", "routing_mode", "review_budget", "review_threshold",
    "audit_rate", "target_accuracy", "review_cap", "retrain_every", "overlap_rate", "overlap_k",
)


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    """Change a project's name, task description, reviewer guidelines, label mode and review policy (keys of
    ``PROJECT_FIELDS``)."""
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown project settings: {', '.join(sorted(unknown))}.")
    if project.multi_label and fields.get("multi_label") is False:
        n = _count_multi_labelled(project)
        if n:
            raise ServiceError(
                f"{n} item{'s' if n != 1 else ''} carry several labels; a single-label project cannot hold them. "
                "Edit those items first, or keep the project multi-label."
            )
    for name, value in fields.items():
        setattr(project, name, value)
    project.save(update_fields=list(fields))
    return project


def _count_multi_labelled(project: Project) -> int:
    rows = Item.objects.filter(project=project).values_list("proposed_labels", "final_labels")
    return sum(1 for proposed, final in rows.iterator(chunk_size=RELABEL_BATCH) if len(final or proposed) > 1)


def _lock_schema(project: Project) -> None:
    """Make label and dimension changes of ``project`` take turns until the current transaction ends.

    PostgreSQL: a transaction-level advisory lock rather than the project row, because a review that asks for a scoring
    round updates the project row while it holds its item, and a relabel holding the project row while it waits for that
    item would deadlock with it. SQLite: IMMEDIATE transactions (settings.py) hold the database's write lock from BEGIN.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # int4 keys: ids past 2**31 wrap, and two projects sharing a key merely wait for each other.
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SCHEMA_LOCK_SPACE, project.pk % 2**31])


def _current(label: Label) -> Label:
    """``label`` as stored now (call with the schema lock held), refused if its name is not the one the caller read."""
    current = Label.objects.filter(pk=label.pk).first()
    if current is None:
        raise ServiceError(f"The label '{label.name}' was deleted or merged by someone else meanwhile; "
                           "nothing was changed.")
    if current.name != label.name:
        raise ServiceError(f"The label '{label.name}' was renamed to '{current.name}' by someone else meanwhile; "
                           "nothing was changed. Reload the page and try again.")
    return current


def _clean_label_fields(*, project: Project, name: str, hotkey: str, color: str, exclude_id: int | None) -> None:
    others = Label.objects.filter(project=project).exclude(pk=exclude_id)
    if not name.strip():
        raise ServiceError("A label needs a name.")
    if LABEL_SEPARATOR in name:
        raise ServiceError(f"A label name cannot contain '{LABEL_SEPARATOR}': CSV exports use it to join labels.")
    if others.filter(name__iexact=name).exists():
        raise ServiceError(f"There is already a label called '{name}' (names are compared ignoring case).")
    if hotkey:
        if len(hotkey) != 1 or not hotkey.isalnum():
            raise ServiceError("A hotkey is one letter or digit.")
        if hotkey in RESERVED_HOTKEYS:
            raise ServiceError(f"'{hotkey}' is a review-queue key (a, e, g, r, s, u); pick another.")
        taken = others.filter(hotkey=hotkey).values_list("name", flat=True).first()
        if taken is not None:
            raise ServiceError(f"Hotkey '{hotkey}' is taken by '{taken}'.")
    if not COLOR_RE.match(color):
        raise ServiceError("A colour is written #rrggbb, e.g. #4c6ef5.")


@transaction.atomic
def label_create(
    *, project: Project, name: str, description: str = "", label_words: Iterable[str] = (), hotkey: str = "",
    color: str = "#4c6ef5", order: int | None = None,
) -> Label:
    name, hotkey = name.strip(), hotkey.strip().lower()
    # Checked under the lock, so two leads adding one name at once get this error, not the unique constraint's.
    _lock_schema(project)
    _clean_label_fields(project=project, name=name, hotkey=hotkey, color=color, exclude_id=None)
    if order is None:
        order = (Label.objects.filter(project=project).aggregate(m=Max("order"))["m"] or 0) + 1
    return Label.objects.create(
        project=project, name=name, description=description, label_words=list(label_words), hotkey=hotkey,
        color=color, order=order,
    )


@transaction.atomic
def label_update(
    *, label: Label, user=None, name: str, description: str = "", label_words: Iterable[str] = (), hotkey: str = "",
    color: str = "#4c6ef5", order: int | None = None,
) -> Label:
    """Change a label; a new name is written into every item that carries the old one (with a Review row each)."""
    name, hotkey = name.strip(), hotkey.strip().lower()
    _lock_schema(label.project)
    old_name = _current(label).name
    _clean_label_fields(project=label.project, name=name, hotkey=hotkey, color=color, exclude_id=label.pk)
    label.name, label.description, label.label_words = name, description, list(label_words)
    label.hotkey, label.color = hotkey, color
    if order is not None:
        label.order = order
    label.save()
    if name != old_name:
        _relabel_items(project=label.project, old=old_name, new=name, user=user,
                       note=f"label '{old_name}' renamed to '{name}'")
    return label


@transaction.atomic
def label_merge(*, label: Label, into: Label, user=None) -> int:
    """Rewrite every item labelled ``label`` to ``into``, then delete ``label``; returns the number of items changed."""
    if into.project_id != label.project_id or into.pk == label.pk:
        raise ServiceError("Merge a label into another label of the same project.")
    _lock_schema(label.project)
    _current(label)
    _current(into)
    changed = _relabel_items(project=label.project, old=label.name, new=into.name, user=user,
                             note=f"label '{label.name}' merged into '{into.name}'")
    label.delete()
    return changed


@transaction.atomic
def label_delete(*, label: Label) -> None:
    """Delete a label no item uses; a label in use must be merged into another (``label_merge``)."""
    _lock_schema(label.project)
    _current(label)
    n = label_usage(label=label)
    if n:
        raise ServiceError(
            f"'{label.name}' is used by {n} item{'s' if n != 1 else ''}. Merge it into another label instead, "
            "so those items keep a label."
        )
    label.delete()


def label_usage(*, label: Label) -> int:
    """How many items carry the label as proposed, final, voted or model label.

    JSON containment is not portable to SQLite, so this scans the project's items once (in chunks); it serves rare
    lead actions, not pages.
    """
    return sum(1 for _ in _items_with_label(project=label.project, name=label.name))


def _items_with_label(*, project: Project, name: str):
    rows = Item.objects.filter(project=project).values_list(
        "id", "proposed_labels", "final_labels", "llm_votes", "model_label"
    )
    for item_id, proposed, final, votes, model_label in rows.iterator(chunk_size=RELABEL_BATCH):
        if name in (proposed or ()) or name in (final or ()) or name in (votes or {}) or model_label == name:
            yield item_id


def _replace(labels: list[str], old: str, new: str) -> list[str]:
    out = []
    for name in labels:
        name = new if name == old else name
        if name not in out:
            out.append(name)
    return out


def _relabel_items(*, project: Project, old: str, new: str, user, note: str) -> int:
    def relabel(item: Item) -> ItemChange | None:
        votes = dict(item.llm_votes or {})
        if old not in (*(item.proposed_labels or ()), *(item.final_labels or ()), *votes, item.model_label):
            return None  # lost the label between the scan and the lock
        if old in votes:
            votes[new] = votes.get(new, 0) + votes.pop(old)
        return ItemChange(action=ReviewAction.RELABEL, proposed_labels=_replace(item.proposed_labels or [], old, new),
                          final_labels=_replace(item.final_labels or [], old, new), note=note,
                          fields={"llm_votes": votes, "model_label": new if item.model_label == old else item.model_label})

    ids = list(_items_with_label(project=project, name=old))
    changed = items_change(project_id=project.pk, item_ids=ids, decide=relabel, user=user,
                           read=("llm_votes", "model_label"))
    return len(changed)


def _clean_attribute(*, project: Project, name: str, values: list[str], exclude_id: int | None) -> list[str]:
    if not name.strip():
        raise ServiceError("A dimension needs a name.")
    if AttributeDimension.objects.filter(project=project, name__iexact=name).exclude(pk=exclude_id).exists():
        raise ServiceError(f"There is already a dimension called '{name}'.")
    cleaned = []
    for value in values:
        value = value.strip()
        if value and value not in cleaned:
            cleaned.append(value)
    if not cleaned:
        raise ServiceError("A dimension needs at least one value.")
    return cleaned


@transaction.atomic
def attribute_create(*, project: Project, name: str, values: list[str]) -> AttributeDimension:
    name = name.strip()
    _lock_schema(project)
    values = _clean_attribute(project=project, name=name, values=values, exclude_id=None)
    order = (AttributeDimension.objects.filter(project=project).aggregate(m=Max("order"))["m"] or 0) + 1
    return AttributeDimension.objects.create(project=project, name=name, values=values, order=order)


@transaction.atomic
def attribute_update(*, dimension: AttributeDimension, name: str, values: list[str]) -> AttributeDimension:
    """Rename a dimension or change its values; items generated earlier keep the conditions in their provenance."""
    name = name.strip()
    _lock_schema(dimension.project)
    dimension.values = _clean_attribute(project=dimension.project, name=name, values=values, exclude_id=dimension.pk)
    dimension.name = name
    dimension.save(update_fields=["name", "values"])
    return dimension


def attribute_delete(*, dimension: AttributeDimension) -> None:
    dimension.delete()
