"""The review queue page and its actions: claim an item, act on it, get the next one (an HTMX swap, or POST + redirect).
"""
from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotation.errors import ServiceError
from annotation.items.selectors import item_panels
from annotation.models import RejectReason, ReviewAction, Status
from annotation.permissions import MEMBER, project_view
from annotation.projects.selectors import project_labels
from annotation.queue import services as queue
from annotation.queue.display import chips, item_why, labels_shown, provenance_shown
from annotation.queue.forms import ReviewActionForm
from synthstudio.lib.pages import render_page

DONE = {ReviewAction.ACCEPT: "Accepted", ReviewAction.EDIT: "Saved your edit of", ReviewAction.REJECT: "Rejected",
        ReviewAction.SKIP: "Skipped"}


@project_view(MEMBER)
def queue_page(request, access):
    item = queue.queue_claim(project=access.project, user=request.user)
    return _render_queue(request, access, item)


@require_POST
@project_view(MEMBER)
def queue_review(request, access, item_id):
    labels = project_labels(project=access.project)
    form = ReviewActionForm(request.POST, label_names=[label.name for label in labels])
    if form.is_valid():
        data = form.cleaned_data
        try:
            review = queue.item_review(
                project=access.project, item_id=item_id, user=request.user, action=data["action"],
                expected_version=data["version"], labels=data["labels"] or None, text=data["text"] or None,
                reason=data["reason"], note=data["note"], time_spent_ms=data["time_spent_ms"],
            )
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{DONE[review.action]} item {item_id}. Press u to undo.")
            return _next(request, access, labels)
    else:
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    return _next(request, access, labels, kept=_kept(request.POST, item_id))


def _kept(post, item_id: int) -> dict | None:
    """The text and labels of a refused accept or edit, to show again; None for other actions (nothing typed)."""
    version = post.get("version", "")
    if post.get("action") not in ("accept", "edit") or not version.isdigit():
        return None
    return {"item_id": item_id, "version": int(version), "text": _lf(post.get("text")),
            "labels": post.getlist("labels")}


@require_POST
@project_view(MEMBER)
def queue_undo(request, access):
    try:
        review = queue.item_undo(project=access.project, user=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Undone: item {review.item_id} is back with you.")
    return _next(request, access)


def _lf(text: str | None) -> str | None:
    return text.replace("\r\n", "\n") if text is not None else None


def _next(request, access, labels=None, kept=None):
    """The next item, or, after a refused save, the same item again with what the reviewer typed and picked (never
    thrown away: a missing label or a too-long text is fixed in place). Without htmx a POST redirects, except to keep
    such input, which a redirect would lose."""
    if not request.htmx and kept is None:
        return redirect("queue", project_id=access.project.id)
    item = queue.queue_claim(project=access.project, user=request.user)
    if kept is not None and (item is None or (item.id, item.version) != (kept["item_id"], kept["version"])):
        kept = None  # the item moved on (saved meanwhile, lease lost): the message says so, the input no longer fits
        if not request.htmx:
            return redirect("queue", project_id=access.project.id)
    return _render_queue(request, access, item, labels, kept=kept)


def _render_queue(request, access, item, labels=None, kept=None):
    labels = labels if labels is not None else project_labels(project=access.project)
    shown = labels_shown(labels)
    context = {
        "item": item, "labels": shown, "progress": queue.queue_progress(project=access.project, user=request.user),
        "reasons": RejectReason.choices, "kept": kept,
    }
    if item is not None:
        second_opinion = item.status != Status.NEEDS_REVIEW
        panels = item_panels(item=item)
        by_name = {label.name: label for label in shown}
        shown_labels = item.proposed_labels if second_opinion else item.labels
        context.update(
            signals=panels["signals"], provenance=provenance_shown(panels["provenance"]), second_opinion=second_opinion,
            chosen=set(kept["labels"] if kept else shown_labels), needs_label=not shown_labels,
            proposal=chips(item.proposed_labels, by_name),
            why=item_why(item=item, second_opinion=second_opinion, by_name=by_name),
        )
        # What the form shows: the text a refused submission carried, else the item's (a template value, no write).
        context["text"] = kept["text"] if kept and kept["text"] is not None else item.text
    return render_page(request, access, "annotation/queue/queue.html", partial="annotation/queue/_queue_panel.html",
                       **context)
