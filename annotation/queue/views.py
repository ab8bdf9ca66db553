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
    else:
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    return _next(request, access, labels)


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


def _next(request, access, labels=None):
    if not request.htmx:
        return redirect("queue", project_id=access.project.id)
    item = queue.queue_claim(project=access.project, user=request.user)
    return _render_queue(request, access, item, labels)


def _render_queue(request, access, item, labels=None):
    context = {
        "item": item, "labels": labels if labels is not None else project_labels(project=access.project),
        "progress": queue.queue_progress(project=access.project, user=request.user), "reasons": RejectReason.choices,
    }
    if item is not None:
        second_opinion = item.status != Status.NEEDS_REVIEW
        context.update(item_panels(item=item), second_opinion=second_opinion,
                       chosen=set(item.proposed_labels if second_opinion else item.labels))
    return render_page(request, access, "annotation/queue/queue.html", partial="annotation/queue/_queue_panel.html",
                       **context)
