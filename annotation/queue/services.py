"""The review queue: who gets which item next, what a review action does to it, undo, overlap and progress.

Claims. An annotator holds at most one item at a time, on a lease of ``REVIEW_LEASE_SECONDS``. Asking for the queue
again returns the item already held (and renews its lease). Otherwise the next item is claimed (``claimed_by`` empty
or lease expired). Both are one statement, ``UPDATE ... WHERE id = COALESCE(held, first free candidate of each part)
RETURNING *`` (see ``_claim_where``); on PostgreSQL candidates are locked with ``FOR UPDATE SKIP LOCKED`` so
concurrent annotators pass over each other's rows instead of waiting. An expired lease simply makes the item
claimable again. Claims commit without waiting for the disk (``_commit_lazily``): losing the newest claims in a crash
only returns items to the queue.

Order. Second opinions first (see overlap), then random checks (calibration samples and audits, by id: partial index
``item_queue_checks``), then scored items by ``ambiguity`` descending, then unscored items, each by id. Checks come
before the ambiguous items because they are the certificate's evidence: the share of the dataset the router may
auto-accept grows with them, so every check answered early spares people items the next round would have
auto-accepted (audits are drawn among the least ambiguous items, and by ambiguity alone they were reviewed last, after
every item the region might have covered). The scored and unscored parts are two queries so that both walk the partial
index ``item_queue_order`` in order (PostgreSQL sorts NULL first in a DESC index, SQLite last; splitting them gives one
order on both). Items this annotator skipped go to the back: they are offered again only when nothing else is left.

Actions (``item_review``) check the version the annotator saw with a conditional UPDATE on ``Item.version``; a stale
form is refused with ``StaleItem`` and never applied. Accept and edit both save the form as the annotator left it
(picked labels, text); the Review is logged as ``edit`` when that differs from what they were shown, else ``accept``.
Reject needs a reason. Skip applies only to the item the annotator holds in review (claimed by them, open for review,
not archived): it releases the lease, logs a skip and changes nothing else; anything else is refused with no Review row.

Overlap. ``items_apply_overlap`` marks a stable pseudo-random share (``Project.overlap_rate``) of items in review as
needing ``overlap_k`` reviews. The first review decides: it sets the status and final labels like any review. Later
reviews are second opinions: each is logged as a Review whose ``after`` holds that reviewer's own verdict (status,
labels, text) for agreement measures, bumps ``review_count`` and the version, and leaves the item's decision as it
is. Second-opinion reviewers see the LLM's proposal, not the first reviewer's labels. Nobody gets an overlap item they
have reviewed before, and the review itself is refused to anyone whose earlier review of it stands (not undone): the
condition is part of the conditional UPDATE, so neither a replayed form nor two requests at once can add a second
"independent" review by the same person.

Undo (``item_undo``) takes back the annotator's latest accept/edit/reject that is not undone yet, only if nobody has
changed the item since (its version is still the one that review produced). A first review goes back to
``needs_review`` with the text and labels it showed before; a second opinion is withdrawn (``review_count`` - 1).
Either way the item is claimed by the annotator again, and any other item they held is released. Pressing undo again
takes back the review before that.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from annotation.events import event_publish
from annotation.items.services import ServiceError, StaleItem, item_log, item_transition
from annotation.models import (
    FINAL_STATUSES,
    HUMAN_DECISIONS,
    RANDOM_CHECK,
    Item,
    Label,
    Project,
    RejectReason,
    Review,
    ReviewAction,
    Status,
)
from annotation.selection import COHORT_FIELDS, cohort_of, selection_maybe_schedule, selection_request_round
from synthstudio.lib.prepared import Prepared

ACTIONS = ("accept", "edit", "reject", "skip")
# How far back undo looks for the annotator's latest review that is not undone yet.
UNDO_DEPTH = 50

# Decided by a first review but still owed second opinions (overlap). Imported or auto-decided items have no review
# yet, hence review_count >= 1; the partial index ``item_second_opinions`` has exactly this condition.
SECOND_OPINION_DUE = Q(status__in=FINAL_STATUSES, review_count__gte=1, review_count__lt=F("reviews_required"))
OPEN_FOR_REVIEW = Q(status=Status.NEEDS_REVIEW) | SECOND_OPINION_DUE


def _lease() -> timedelta:
    return timedelta(seconds=settings.REVIEW_LEASE_SECONDS)


def _free(now: datetime) -> Q:
    return Q(claimed_by__isnull=True) | Q(lease_expires_at__lt=now)


def _reviewed_by(user) -> Exists:
    return Exists(Review.objects.filter(item=OuterRef("pk"), user=user, action__in=HUMAN_DECISIONS))


def _review_stands(user) -> Exists:
    """A decision of this user on the item that no undo of theirs took back (an undo starts from the version the undone
    review produced, see ``item_undo``); served by the index review_item_recent."""
    undone = Review.objects.filter(item_id=OuterRef("item_id"), user=user, action=ReviewAction.UNDO,
                                   before__version=OuterRef("after__version"))
    return Exists(Review.objects.filter(item=OuterRef("pk"), user=user, action__in=HUMAN_DECISIONS).exclude(Exists(undone)))


# An overlap item's reviews must come from different people; an item needing one review may come back to its reviewer.
def _independent(user) -> Q:
    return Q(reviews_required__lte=1) | ~_review_stands(user)


def _skipped_by(user) -> Exists:
    return Exists(Review.objects.filter(item=OuterRef("pk"), user=user, action=ReviewAction.SKIP))


def _candidates(*, project, user, now: datetime, with_skipped: bool) -> list[QuerySet]:
    """The queue's parts in the order they are served; each is read with LIMIT 1."""
    base = Item.objects.filter(project=project, archived_at__isnull=True).filter(_free(now))
    if not with_skipped:
        base = base.exclude(_skipped_by(user))
    second_opinions = base.filter(SECOND_OPINION_DUE).exclude(_reviewed_by(user))
    # An item that needs one review may come back to its earlier reviewer (reopened by a lead, re-routed); an
    # overlap item never does.
    fresh = base.filter(status=Status.NEEDS_REVIEW).filter(Q(reviews_required__lte=1) | ~_reviewed_by(user))
    return [
        second_opinions.order_by("id"),
        fresh.filter(RANDOM_CHECK).order_by("id"),
        fresh.filter(ambiguity__isnull=False).order_by("-ambiguity", "id"),
        fresh.filter(ambiguity__isnull=True).order_by("id"),
    ]


def _held_by(*, project, user, now: datetime) -> QuerySet:
    return Item.objects.filter(
        OPEN_FOR_REVIEW, project=project, archived_at__isnull=True, claimed_by=user, lease_expires_at__gte=now
    )


def _claim_where(*, project: int, user: int, now: datetime) -> tuple[str, list]:
    """``WHERE id = COALESCE(held item, first free candidate of each part in queue order) RETURNING *``.

    COALESCE stops at its first non-null argument and PostgreSQL runs a scalar subquery only when it is first needed,
    so the parts after the one that yields an item are never read (nor their rows locked). On PostgreSQL each candidate
    is read ``FOR UPDATE SKIP LOCKED``: concurrent claimers pass over each other's rows instead of waiting, and the
    lock re-checks the candidate's conditions on the row's newest version, so a row someone else claimed a moment ago
    is never taken. SQLite runs one writer at a time, so the statement is atomic there as it stands.
    """
    lock = connection.features.has_select_for_update_skip_locked
    parts = [_held_by(project=project, user=user, now=now).order_by("id")]
    for with_skipped in (False, True):
        for candidates in _candidates(project=project, user=user, now=now, with_skipped=with_skipped):
            parts.append(candidates.select_for_update(skip_locked=True) if lock else candidates)
    firsts, params = [], []
    for part in parts:
        sql, part_params = part.values("pk")[:1].query.sql_with_params()
        firsts.append(f"({sql})")
        params.extend(part_params)
    return f"WHERE {connection.ops.quote_name('id')} = COALESCE({', '.join(firsts)}) RETURNING *", params


_CLAIM = Prepared(_claim_where, ints=("project", "user"), datetimes=("now",))


def queue_claim(*, project: Project, user) -> Item | None:
    """The item this annotator should review now: the one they hold, else the next one, claimed. None if done.

    One statement, built once per process (``synthstudio.lib.prepared``): it renews the lease of the held item or
    claims the first free candidate.
    """
    now = timezone.now()
    ops = connection.ops
    # Inside someone else's transaction the commit is theirs, and may carry writes that must be durable.
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            _commit_lazily()
        where, params = _CLAIM.sql(project=project.pk, user=user.pk, now=now)
        sql = (f"UPDATE {ops.quote_name(Item._meta.db_table)} SET {ops.quote_name('claimed_by_id')} = %s, "
               f"{ops.quote_name('lease_expires_at')} = %s {where}")
        claimed = list(Item.objects.raw(sql, [user.pk, ops.adapt_datetimefield_value(now + _lease()), *params]))
    return claimed[0] if claimed else None


def _commit_lazily() -> None:
    """Let PostgreSQL acknowledge this transaction's commit before its WAL reaches the disk.

    Only for claims and lease renewals: after a server crash the newest claims may be missing, which puts those items
    back in the queue (the annotator's save is still accepted, see ``item_review``). Reviews always commit durably.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _clean_labels(project: Project, labels: list[str] | None) -> list[str] | None:
    if labels is None:
        return None
    names = set(Label.objects.filter(project=project).values_list("name", flat=True))
    unknown = [name for name in labels if name not in names]
    if unknown:
        raise ServiceError(f"Unknown label(s) for this project: {', '.join(unknown)}.")
    labels = list(dict.fromkeys(labels))
    if not project.multi_label and len(labels) > 1:
        raise ServiceError("This project takes one label per item; pick one.")
    return labels


@transaction.atomic
def item_review(
    *,
    project: Project,
    item_id: int,
    user,
    action: str,
    expected_version: int,
    labels: list[str] | None = None,
    text: str | None = None,
    reason: str = "",
    note: str = "",
    time_spent_ms: int | None = None,
) -> Review:
    """Apply one annotator's accept/edit/reject/skip to the item they were shown at ``expected_version``."""
    if action not in ACTIONS:
        raise ServiceError(f"Unknown action '{action}'.")
    if action == "skip":
        return _item_skip(project=project, item_id=item_id, user=user, note=note, time_spent_ms=time_spent_ms)
    labels = _clean_labels(project, labels)
    if action == "reject" and reason not in RejectReason.values:
        raise ServiceError("Pick a reason for rejecting the item.")
    if action == "edit" and text is not None and not text.strip():
        raise ServiceError("The text cannot be empty; reject the item instead.")
    if action == "reject":
        text = None

    now = timezone.now()
    # The conditional UPDATE is the version check and, until the transaction ends, the row lock.
    taken = (
        Item.objects.filter(OPEN_FOR_REVIEW, _free(now) | Q(claimed_by=user), _independent(user), pk=item_id,
                            project=project, archived_at__isnull=True, version=expected_version)
        .update(claimed_by=None, lease_expires_at=None, review_count=F("review_count") + 1)
    )
    if not taken:
        raise _why_refused(project=project, item_id=item_id, user=user, expected_version=expected_version, now=now)
    item = Item.objects.get(pk=item_id)

    if action == "reject":
        verdict, final_labels, new_text = Status.REJECTED, [], None
        logged = ReviewAction.REJECT
    else:
        # Second-opinion reviewers are shown the LLM's proposal, not the first reviewer's labels.
        shown = list(item.labels if item.status == Status.NEEDS_REVIEW else item.proposed_labels)
        final_labels = labels or shown
        if not final_labels:
            raise ServiceError("Pick a label first: this item has no proposed label.")
        new_text = _edited_text(item, text)
        verdict = Status.ACCEPTED
        changed = final_labels != shown or new_text is not None
        logged = ReviewAction.EDIT if changed else ReviewAction.ACCEPT

    common = {"user": user, "reason": reason if logged == ReviewAction.REJECT else "", "note": note,
              "time_spent_ms": time_spent_ms}
    first_decision = item.status == Status.NEEDS_REVIEW
    review = item_transition(item=item, to=verdict, action=logged, final_labels=final_labels, text=new_text,
                             second_opinion=not first_decision, **common)
    event_publish(project_id=project.pk, event="item.reviewed",
                  data=_reviewed_event(item=item, review=review, user=user, second_opinion=not first_decision))
    # Every ``retrain_every`` human decisions the model retrains and re-routes (queued once this transaction commits).
    # The last calibration decision ends the calibration phase: the round that may auto-accept runs at once.
    if first_decision and item.is_calibration and _calibration_done(project, item):
        selection_request_round(project.pk, force=True)
    else:
        selection_maybe_schedule(project.pk)
    return review


def _reviewed_event(*, item: Item, review: Review, user, second_opinion: bool) -> dict:
    """What ``item.reviewed`` announces: the review, and the item as it left it (a second opinion leaves the first
    review's decision in place)."""
    return {"item": item.pk, "review": review.pk, "action": review.action, "reviewer": user.username,
            "second_opinion": second_opinion, "status": item.status, "labels": list(item.final_labels or []),
            "text": item.text, "version": item.version}


def _calibration_done(project: Project, item: Item) -> bool:
    """Whether a person has decided every calibration item of ``item``'s cohort (the LLM, prompt and model behind its
    label). Calibration decisions check it one at a time, under the project row's lock: two reviewers deciding the
    last two items at once would otherwise each still see the other's item open (neither has committed) and neither
    would ask for the round."""
    Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()
    cohort = cohort_of(item.generation_job_id, ((item.provenance or {}).get("labelling") or {}).get("job"))
    open_flagged = Item.objects.filter(project=project, is_calibration=True, archived_at__isnull=True).exclude(
        status__in=FINAL_STATUSES).values_list(*COHORT_FIELDS)
    return all(cohort_of(job, labelling) != cohort for job, labelling in open_flagged.iterator())


def _edited_text(item: Item, text: str | None) -> str | None:
    """The new text if the annotator changed it, else None; browsers send CRLF and padding a person did not type."""
    if text is None or not text.strip():
        return None
    text = text.replace("\r\n", "\n").strip()
    return text if text != item.text.strip() else None


def _why_refused(*, project: Project, item_id: int, user, expected_version: int, now: datetime) -> ServiceError:
    item = Item.objects.filter(pk=item_id, project=project).select_related("claimed_by").first()
    if item is None:
        return ServiceError("That item does not exist in this project.")
    if item.version != expected_version:
        last = Review.objects.filter(item=item).order_by("-id").values_list("user_id", flat=True).first()
        if last == user.pk:
            return StaleItem("You have already saved this item; here is your next one.")
        return StaleItem("This item was changed by someone else since you opened it; your change was not saved. "
                         "Here is your next item.")
    if not Item.objects.filter(_independent(user), pk=item_id).exists():
        return ServiceError("You have already reviewed this item, and it needs reviews from different people; "
                            "your second review was not saved.")
    if item.claimed_by_id not in (None, user.pk) and item.lease_expires_at and item.lease_expires_at >= now:
        return StaleItem(f"Your claim on this item expired and {item.claimed_by.username} is reviewing it now; "
                         "your change was not saved.")
    return ServiceError("This item is no longer waiting for review.")


def _item_skip(*, project: Project, item_id: int, user, note: str, time_spent_ms: int | None) -> Review:
    """Release the item the annotator holds in review and log the skip; anything else is refused, with no row."""
    released = Item.objects.filter(OPEN_FOR_REVIEW, pk=item_id, project=project, claimed_by=user,
                                   archived_at__isnull=True).update(claimed_by=None, lease_expires_at=None)
    item = Item.objects.filter(pk=item_id, project=project).select_related("claimed_by").first()
    if item is None:
        raise ServiceError("That item does not exist in this project.")
    if not released:
        if item.archived_at is not None or not Item.objects.filter(OPEN_FOR_REVIEW, pk=item_id).exists():
            raise ServiceError("This item is no longer waiting for review, so there is nothing to skip.")
        if item.claimed_by_id is not None and item.claimed_by_id != user.pk:
            raise StaleItem(f"{item.claimed_by.username} is reviewing this item now; only the item you hold can be "
                            "skipped.")
        raise ServiceError("You are not reviewing this item; only the item you hold can be skipped.")
    return item_log(item=item, action=ReviewAction.SKIP, user=user, note=note, time_spent_ms=time_spent_ms)


@transaction.atomic
def item_undo(*, project: Project, user) -> Review:
    """Take back the user's latest review that is not undone yet; refuse if anyone changed the item since."""
    target = _undo_target(project=project, user=user)
    if target is None:
        raise ServiceError("Nothing to undo.")
    now = timezone.now()
    reverted = Item.objects.filter(pk=target.item_id, version=target.after.get("version")).update(
        review_count=F("review_count") - 1, claimed_by=user, lease_expires_at=now + _lease()
    )
    if not reverted:
        raise StaleItem("Cannot undo: someone changed that item after your review.")
    Item.objects.filter(project=project, claimed_by=user).exclude(pk=target.item_id).update(
        claimed_by=None, lease_expires_at=None
    )
    item = Item.objects.get(pk=target.item_id)
    note = f"undoes review {target.pk}"
    if target.after.get("second_opinion"):
        # The item kept the first review's decision; withdrawing the opinion moves its version only.
        return item_transition(item=item, action=ReviewAction.UNDO, user=user, note=note)
    shown = target.before.get("labels") or []
    # ``labels`` in a snapshot is what the item showed (final or else proposed); restore exactly that.
    final_labels = [] if shown == list(item.proposed_labels) else shown
    return item_transition(item=item, to=Status.NEEDS_REVIEW, action=ReviewAction.UNDO, user=user, note=note,
                           final_labels=final_labels, text=target.before.get("text", item.text))


def _undo_target(*, project: Project, user) -> Review | None:
    recent = Review.objects.filter(
        project=project, user=user, action__in=(*HUMAN_DECISIONS, ReviewAction.UNDO)
    ).order_by("-id")[:UNDO_DEPTH]
    undone = set()
    for review in recent:
        if review.action == ReviewAction.UNDO:
            # An undo starts from the version the undone review produced (it is refused otherwise).
            undone.add((review.item_id, review.before.get("version")))
        elif (review.item_id, review.after.get("version")) not in undone:
            return review
    return None


# Counting a huge queue exactly costs a scan of it on every action; beyond this the page says "1000+".
PROGRESS_CAP = 1000


@dataclass(frozen=True)
class QueueProgress:
    waiting: int
    second_opinions: int
    held_by_others: int
    reviewed_today: int
    last_hour: int

    @property
    def remaining(self) -> str:
        total = self.waiting + self.second_opinions
        return f"{PROGRESS_CAP}+" if total > PROGRESS_CAP else str(total)


def queue_progress(*, project: Project, user) -> QueueProgress:
    """Counters for the queue page in one statement (built once per process), bounded whatever the project's size."""
    now = timezone.now()
    day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    hour_ago = now - timedelta(hours=1)
    sql, params = _PROGRESS.sql(project=project.pk, user=user.pk, now=now, day_start=day_start, hour_ago=hour_ago,
                                since=min(day_start, hour_ago))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        waiting, second_opinions, held_by_others, today, undone_today, hour, undone_hour = cursor.fetchone()
    return QueueProgress(
        waiting=waiting,
        second_opinions=second_opinions,
        held_by_others=held_by_others,
        reviewed_today=max((today or 0) - (undone_today or 0), 0),
        last_hour=max((hour or 0) - (undone_hour or 0), 0),
    )


def _progress_select(*, project: int, user: int, now: datetime, day_start: datetime, hour_ago: datetime,
                     since: datetime) -> tuple[str, list]:
    """Three item counts as scalar subqueries beside one aggregate of the annotator's reviews ``since`` (the earlier
    of the day's start and an hour ago; LEFT JOIN: no reviews yet is one row of NULLs)."""
    items = Item.objects.filter(project=project, archived_at__isnull=True).order_by()
    # Each count walks one small index: the partial queue indexes (capped) and the claimed_by foreign key.
    counts = [
        items.filter(status=Status.NEEDS_REVIEW)[: PROGRESS_CAP + 1],
        items.filter(SECOND_OPINION_DUE)[: PROGRESS_CAP + 1],
        items.filter(OPEN_FOR_REVIEW, claimed_by__isnull=False, lease_expires_at__gte=now).exclude(claimed_by=user),
    ]
    decided, undone = Q(action__in=HUMAN_DECISIONS), Q(action=ReviewAction.UNDO)
    # Walks the index review_project_user_created over today's (or the last hour's) reviews only.
    mine = (
        Review.objects.filter(project=project, user=user, created_at__gte=since)
        .order_by()
        .values("user")
        .annotate(
            today=Count("pk", filter=decided & Q(created_at__gte=day_start)),
            undone_today=Count("pk", filter=undone & Q(created_at__gte=day_start)),
            hour=Count("pk", filter=decided & Q(created_at__gte=hour_ago)),
            undone_hour=Count("pk", filter=undone & Q(created_at__gte=hour_ago)),
        )
        .values("today", "undone_today", "hour", "undone_hour")
    )
    selects, params = [], []
    for queryset in counts:
        sql, part = queryset.values("pk").query.sql_with_params()
        selects.append(f"(SELECT COUNT(*) FROM ({sql}) counted)")
        params.extend(part)
    mine_sql, mine_params = mine.query.sql_with_params()
    return (f"SELECT {', '.join(selects)}, mine.* FROM (SELECT 1) one LEFT JOIN ({mine_sql}) mine ON TRUE",
            [*params, *mine_params])


_PROGRESS = Prepared(_progress_select, ints=("project", "user"), datetimes=("now", "day_start", "hour_ago", "since"))
