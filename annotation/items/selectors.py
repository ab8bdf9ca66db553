"""Reads for the lead's item browser: filtered keyset pages over a project's items, one item with its history and its
"why routed" and provenance panels (the queue shows the same panels).

Pages are newest first and addressed by id (``after``: older than this id, ``before``: newer than it), so a page
costs one index range scan however deep it is: ``item_project_id`` without a status filter, ``item_project_status_id``
with one. Label and text filters are applied while walking that range; a rare term in a huge project walks far
(a trigram index would be the next step on PostgreSQL).
"""
import json
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from annotation.models import Item, Label, Project, Review

PAGE_SIZE = 50


@dataclass(frozen=True)
class ItemPage:
    items: list[Item]
    newer: int | None  # pass as ``before`` to get the page before this one
    older: int | None  # pass as ``after`` to get the page after this one


def _has_label(label: str) -> Q:
    """Items whose current labels (final, else proposed) include ``label``."""
    if connection.vendor == "postgresql":
        final, proposed = Q(final_labels__contains=[label]), Q(proposed_labels__contains=[label])
    else:
        # SQLite has no JSON containment lookup; a JSON list holds the quoted name exactly when it holds the label.
        quoted = json.dumps(label)
        final, proposed = Q(final_labels__icontains=quoted), Q(proposed_labels__icontains=quoted)
    return final | (Q(final_labels=[]) & proposed)


def items_browse(
    *,
    project: Project,
    status: str = "",
    source: str = "",
    label: str = "",
    q: str = "",
    scored_round: int | None = None,
    after: int | None = None,
    before: int | None = None,
    page_size: int = PAGE_SIZE,
) -> ItemPage:
    qs = Item.objects.filter(project=project, archived_at__isnull=True)
    if status:
        qs = qs.filter(status=status)
    if source:
        qs = qs.filter(source=source)
    if label:
        qs = qs.filter(_has_label(label))
    if q:
        qs = qs.filter(text__icontains=q)
    if scored_round is not None:
        qs = qs.filter(scored_round=scored_round)
    qs = qs.select_related("claimed_by").defer("extra", "llm_votes")
    # One row more than a page tells whether another page follows in that direction; the other direction has
    # rows whenever we came from there (the page we left).
    if before is not None:
        rows = list(qs.filter(id__gt=before).order_by("id")[: page_size + 1])
        items = list(reversed(rows[:page_size]))
        return ItemPage(items=items, newer=items[0].id if len(rows) > page_size else None,
                        older=items[-1].id if items else None)
    if after is not None:
        qs = qs.filter(id__lt=after)
    rows = list(qs.order_by("-id")[: page_size + 1])
    items = rows[:page_size]
    return ItemPage(items=items, newer=items[0].id if after is not None and items else None,
                    older=items[-1].id if len(rows) > page_size else None)


def item_history(*, item: Item) -> QuerySet[Review]:
    return Review.objects.filter(item=item).select_related("user").order_by("id")


def item_get(*, project: Project, item_id: int) -> Item:
    """The item with whoever holds it, or 404 when it belongs to another project."""
    return get_object_or_404(Item.objects.select_related("claimed_by"), pk=item_id, project=project)


def browse_label_names(*, project: Project) -> list[str]:
    """The label filter's choices. Read here, not from annotation.projects, which depends on this package."""
    return list(Label.objects.filter(project=project).values_list("name", flat=True))


def item_panels(*, item: Item) -> dict:
    """The "why routed" signals and the provenance of an item as (name, shown value) pairs, for the item page and the
    queue; templates escape them."""
    return {
        "signals": [(key, _shown(value)) for key, value in sorted((item.model_scores or {}).items())],
        "provenance": [(key, _shown(value)) for key, value in (item.provenance or {}).items()],
    }


def _shown(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "n/a"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
