"""The review queue over the API: claim the next item, review it with the version you were shown, undo. The same
services as the queue page, so leases, overlap and the refusal of stale edits hold here too."""
from ninja import Router

from annotation.items.selectors import item_history
from annotation.models import Status
from annotation.queue import services as queue
from synthstudio.api.common import access
from synthstudio.api.schemas import ErrorOut, ProgressOut, QueueItem, ReviewIn, ReviewOut

router = Router(tags=["reviews"])


def _held(item) -> dict:
    if item is None:
        return {"item": None}
    item.history = list(item_history(item=item))
    return {"item": item, "second_opinion": item.status != Status.NEEDS_REVIEW,
            "lease_expires_at": item.lease_expires_at}


@router.post("/projects/{project_id}/queue/next", response=QueueItem,
             summary="The item you should review now: the one you hold (lease renewed), else the next one, claimed")
def queue_next(request, project_id: int):
    a = access(request, project_id)
    return _held(queue.queue_claim(project=a.project, user=request.user))


@router.post("/projects/{project_id}/queue/items/{item_id}/review", response={200: ReviewOut, 409: ErrorOut},
             summary="Accept, edit, reject or skip the item at the version you were shown (409 if it changed)")
def queue_review(request, project_id: int, item_id: int, payload: ReviewIn):
    a = access(request, project_id)
    return queue.item_review(project=a.project, item_id=item_id, user=request.user, action=payload.action,
                             expected_version=payload.version, labels=payload.labels or None,
                             text=payload.text or None, reason=payload.reason, note=payload.note,
                             time_spent_ms=payload.time_spent_ms)


@router.post("/projects/{project_id}/queue/undo", response={200: ReviewOut, 409: ErrorOut},
             summary="Take back your latest review that is not undone yet, if nobody changed the item since")
def queue_undo(request, project_id: int):
    return queue.item_undo(project=access(request, project_id).project, user=request.user)


@router.get("/projects/{project_id}/queue/progress", response=ProgressOut)
def queue_progress(request, project_id: int):
    progress = queue.queue_progress(project=access(request, project_id).project, user=request.user)
    return {**progress.__dict__, "remaining": progress.remaining}
