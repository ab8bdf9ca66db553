"""Projects, people, label schemas, items and their audit log.

Models own the rules about one row (the item state machine, the append-only review log); writes that touch several rows
live in ``services.py``.
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from synthstudio.lib.text import content_hash


class Role(models.TextChoices):
    LEAD = "lead", "Lead"
    ANNOTATOR = "annotator", "Annotator"


class RoutingMode(models.TextChoices):
    TARGET = "target", "Target accuracy (certified)"
    BUDGET = "budget", "Review budget (top share most ambiguous)"
    THRESHOLD = "threshold", "Uncertainty threshold"


class Project(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="The task description; it becomes the LLM's system prompt.")
    guidelines = models.TextField(blank=True, help_text="Instructions for reviewers, shown beside the review queue: "
                                  "plain text or simple Markdown (**bold**, *italic*, `code`, lists, links).")
    multi_label = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    # Review policy, used by annotation/selection.py.
    routing_mode = models.CharField(max_length=16, choices=RoutingMode.choices, default=RoutingMode.TARGET)
    review_budget = models.FloatField(default=0.2, help_text="Share of scored items sent to review (budget mode).")
    review_threshold = models.FloatField(default=0.5, help_text="Ambiguity above which an item is reviewed.")
    audit_rate = models.FloatField(default=0.05, help_text="Share of would-be auto-accepted items sampled for audit.")
    target_accuracy = models.FloatField(default=0.98)
    review_cap = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many items reviewed by "
                                             "people in total; empty: no cap.")
    # What the latest scoring round decided (annotation/selection/rounds.py ``_state``): pages read it, so showing the
    # calibration, the LLM's measured accuracy and the certificate costs no query.
    routing_state = models.JSONField(default=dict, blank=True)
    retrain_every = models.PositiveIntegerField(default=50, help_text="Retrain after this many new human reviews.")
    auto_accept_paused = models.BooleanField(default=False)
    auto_accept_paused_reason = models.TextField(blank=True)
    # When the lead last decided on a pause; audits completed before it do not pause auto-accept again.
    auto_accept_decided_at = models.DateTimeField(null=True, blank=True)
    # Set when a retraining round is queued, cleared when a round starts: one queued round per project, not one per
    # review while the worker is busy (annotation.selection.rounds.selection_maybe_schedule).
    round_requested_at = models.DateTimeField(null=True, blank=True)

    # Overlap: a share of items gets k independent reviews, for agreement measures.
    overlap_rate = models.FloatField(default=0.0)
    overlap_k = models.PositiveSmallIntegerField(default=2)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="membership_unique_user_project")]

    def __str__(self):
        return f"{self.user} ({self.role}) in {self.project}"


# Keys the review queue uses itself; a label hotkey may not take one of them.
RESERVED_HOTKEYS = frozenset("aegrsu")


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    label_words = models.JSONField(default=list, blank=True, help_text="Words that express this label in a prompt.")
    hotkey = models.CharField(max_length=1, blank=True)
    color = models.CharField(max_length=7, default="#4c6ef5")
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_unique_name"),
            models.UniqueConstraint(
                fields=["project", "hotkey"], condition=~Q(hotkey=""), name="label_unique_hotkey"
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        if self.hotkey and self.hotkey.lower() in RESERVED_HOTKEYS:
            raise ValidationError(
                {"hotkey": f"'{self.hotkey}' is a review-queue key (a, e, g, r, s, u); pick another."})


class AttributeDimension(models.Model):
    """A dimension for attribute-conditioned generation, e.g. topic with values [sports, finance, travel]."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="attribute_dimensions")
    name = models.CharField(max_length=100)
    values = models.JSONField(default=list)
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="attribute_unique_name")]

    def __str__(self):
        return self.name


class Source(models.TextChoices):
    IMPORTED = "imported", "Imported"
    LLM = "llm", "LLM"
    AUGMENT = "augment", "Offline augmentation"


class Status(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    NEEDS_REVIEW = "needs_review", "Needs review"
    AUTO_ACCEPTED = "auto_accepted", "Auto-accepted"
    FILTERED = "filtered", "Filtered"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


# The item state machine (DESIGN.md). Moves back to review are undo, audits, re-routing after retraining, or a lead
# rescuing a filtered item; every move is made by a service that also writes a Review row.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PROPOSED: frozenset({Status.NEEDS_REVIEW, Status.AUTO_ACCEPTED, Status.FILTERED}),
    Status.NEEDS_REVIEW: frozenset({Status.ACCEPTED, Status.REJECTED, Status.AUTO_ACCEPTED}),
    Status.AUTO_ACCEPTED: frozenset({Status.NEEDS_REVIEW}),
    Status.ACCEPTED: frozenset({Status.NEEDS_REVIEW}),
    Status.REJECTED: frozenset({Status.NEEDS_REVIEW}),
    Status.FILTERED: frozenset({Status.NEEDS_REVIEW}),
}
FINAL_STATUSES = frozenset({Status.ACCEPTED, Status.REJECTED})


class IllegalTransition(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"An item cannot go from {current} to {target}")
        self.current = current
        self.target = target


# Items drawn at random for people to check (a calibration sample or an audit): the certificate's evidence.
RANDOM_CHECK = Q(is_audit=True) | Q(is_calibration=True)


class Item(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    text = models.TextField()
    extra = models.JSONField(default=dict, blank=True, help_text="Imported columns kept as they came.")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.IMPORTED)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)

    # What the LLM proposed. An empty list means no proposal or an abstention: such items always need review.
    proposed_labels = models.JSONField(default=list, blank=True)
    llm_confidence = models.FloatField(null=True, blank=True)
    llm_votes = models.JSONField(default=dict, blank=True, help_text="label -> votes across samples or variants")

    # What the selective-annotation model thinks (annotation/selection.py).
    model_label = models.CharField(max_length=100, blank=True)
    model_scores = models.JSONField(default=dict, blank=True, help_text="probabilities and uncertainty signals")
    ambiguity = models.FloatField(null=True, blank=True, help_text="combined routing score; higher = review sooner")
    route_reason = models.CharField(max_length=200, blank=True)
    is_audit = models.BooleanField(default=False)
    # Drawn into the calibration sample people review before anything is auto-accepted (annotation/selection/rounds.py).
    is_calibration = models.BooleanField(default=False)
    scored_round = models.PositiveIntegerField(null=True, blank=True)

    final_labels = models.JSONField(default=list, blank=True)
    filter_reason = models.CharField(max_length=200, blank=True)

    # Where it came from: job id, prompt conditions, exemplar ids, model name, raw response id.
    provenance = models.JSONField(default=dict, blank=True)
    # A plain id rather than a foreign key keeps the dependency one-way (generation -> annotation).
    generation_job_id = models.BigIntegerField(null=True, blank=True)
    # Set by writers that may run twice (a retried generation batch, a re-run import) so the retry stores nothing new.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    content_hash = models.CharField(max_length=64)

    # Optimistic locking: every change bumps it; a save that expected another version is refused.
    version = models.PositiveIntegerField(default=1)

    # Review-queue lease.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    reviews_required = models.PositiveSmallIntegerField(default=1)
    review_count = models.PositiveSmallIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # Browse pages: WHERE project_id = ? AND status = ? ORDER BY id (keyset pagination).
            models.Index(fields=["project", "status", "id"], name="item_project_status_id"),
            # Review queue: WHERE project_id = ? AND status = 'needs_review' AND archived_at IS NULL
            # ORDER BY ambiguity DESC, id LIMIT 1; and the queue page's capped count of the same rows (an index-only
            # scan: both conditions are in the index's own WHERE, so no table row is read to check them).
            models.Index(
                fields=["project", "-ambiguity", "id"],
                condition=Q(status="needs_review", archived_at__isnull=True),
                name="item_queue_order",
            ),
            # Review queue, random checks first: WHERE project_id = ? AND status = 'needs_review' AND archived_at IS
            # NULL AND (is_audit OR is_calibration) ORDER BY id LIMIT 1 (annotation/queue/services.py).
            models.Index(
                fields=["project", "id"],
                condition=Q(status="needs_review", archived_at__isnull=True) & RANDOM_CHECK,
                name="item_queue_checks",
            ),
            # Review queue, second opinions: WHERE project_id = ? AND status IN ('accepted', 'rejected')
            # AND review_count >= 1 AND review_count < reviews_required ORDER BY id (annotation/queue/services.py).
            models.Index(
                fields=["project", "id"],
                condition=Q(status__in=["accepted", "rejected"], review_count__gte=1,
                            review_count__lt=models.F("reviews_required")),
                name="item_second_opinions",
            ),
            # Lead's browse without a status filter: WHERE project_id = ? AND id < ? ORDER BY id DESC (keyset).
            models.Index(fields=["project", "id"], name="item_project_id"),
            # Duplicate detection: WHERE project_id = ? AND content_hash IN (...).
            models.Index(fields=["project", "content_hash"], name="item_project_hash"),
            # A job's items, newest first (generation/selectors.py job_items): WHERE generation_job_id = ?
            # ORDER BY id DESC LIMIT n; also export and dashboards by job: WHERE generation_job_id = ?.
            models.Index(fields=["generation_job_id", "id"], name="item_generation_job_id"),
            # Calibration samples (annotation/selection/rounds.py, annotation/queue/services.py): WHERE project_id = ?
            # AND is_calibration; a few hundred rows per cohort, read at every round and every calibration decision.
            models.Index(fields=["project", "id"], condition=Q(is_calibration=True), name="item_calibration"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="item_unique_idempotency_key",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} {self.text[:40]}"

    def save(self, *args, **kwargs):
        if not self.content_hash:
            self.content_hash = content_hash(self.text)
        super().save(*args, **kwargs)

    @property
    def labels(self) -> list[str]:
        """The labels the item stands for now: final if a person decided, else what the LLM proposed."""
        return self.final_labels or self.proposed_labels

    def can_move_to(self, target: str) -> bool:
        return target in TRANSITIONS.get(self.status, frozenset())

    def move_to(self, target: str) -> None:
        """Change status in memory (services save it); refuses moves the state machine does not allow."""
        if not self.can_move_to(target):
            raise IllegalTransition(self.status, target)
        self.status = target
        self.version += 1


class ItemCount(models.Model):
    """How many live (not archived) items of a project have a status, a source (imported or not), an LLM proposal (or
    none) and a routing score (or none): the sum of ``n`` over the project's rows with those values. Pages read these
    sums instead of counting items (``annotation/items/counts.py``): the status counts by status alone, the project's
    overview its counts by source, labelling and scoring too (``imported``, ``labelled``, ``scored``, migration 0018).

    Kept by database triggers on the item table (migrations 0015 and 0018), not by the Python writers. A trigger runs
    in the statement's own transaction for every writer there is: the item services, imports by COPY, generation's
    ``bulk_create``, the test factories, the admin's archive, a cascade delete, a benchmark's raw COPY; an explicit
    delta in each writer would drift the first time a new writer forgot it. The counts move with the items they
    count, committed or rolled back together.

    PostgreSQL: one statement-level trigger per INSERT, UPDATE and DELETE reads the statement's transition tables and
    *inserts* one delta row per (project, status, imported, labelled, scored) that changed (a 50,000-row COPY adds a
    few dozen rows; a scoring round that only moves scores adds none). Nothing is updated in place, so no writer ever
    waits for another's counter row: a scoring round that routes for a minute in one transaction holds no lock a review
    needs. The rows of a project are folded into one per combination now and then (by a statement with probability
    1/50, and by the reconciliation), under a try-lock so a fold never waits either. SQLite runs one writer at a time,
    so its row-level triggers update one row per combination in place. ``item_counts_reconcile`` recounts the items,
    adds a correcting row where the sums drifted, and reports it.

    ``project`` has no foreign-key constraint: a constraint would make each delta row lock its project row (KEY
    SHARE) against the project-row locks of rounds and calibration; rows of a deleted project are removed by the
    reconciliation.
    """

    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
                                related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices)
    # source = "imported"
    imported = models.BooleanField(default=False)
    # proposed_labels <> [] (an empty list is no proposal or an abstention)
    labelled = models.BooleanField(default=False)
    # ambiguity IS NOT NULL (a scoring round gave the item a routing score)
    scored = models.BooleanField(default=False)
    n = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            # The pages' read: SELECT status, ..., sum(n) WHERE project_id = ? GROUP BY status, ... (a few dozen rows).
            models.Index(fields=["project", "status"], name="itemcount_project_status"),
        ]

    def __str__(self):
        return (f"{self.status} ({'imported' if self.imported else 'not imported'}, "
                f"{'labelled' if self.labelled else 'unlabelled'}, {'scored' if self.scored else 'unscored'}) "
                f"{self.n:+d} in project {self.project_id}")


class ReviewAction(models.TextChoices):
    ACCEPT = "accept", "Accept"
    EDIT = "edit", "Edit"
    REJECT = "reject", "Reject"
    SKIP = "skip", "Skip"
    UNDO = "undo", "Undo"
    ROUTE = "route", "Routed"
    AUTO_ACCEPT = "auto_accept", "Auto-accepted"
    FILTER = "filter", "Filtered"
    REOPEN = "reopen", "Reopened"
    IMPORT = "import", "Imported"
    # A lead renamed or merged a label; the item's labels were rewritten (annotation/projects/schema.py).
    RELABEL = "relabel", "Relabelled"
    # A labelling job wrote the LLM's proposed labels, confidence and votes onto a pool item (generation/services.py).
    LLM_LABEL = "llm_label", "Labelled by the LLM"


# The actions by which a person decides an item (the partial index ``review_human_decisions`` lists the same three).
HUMAN_DECISIONS = (ReviewAction.ACCEPT, ReviewAction.EDIT, ReviewAction.REJECT)


class RejectReason(models.TextChoices):
    WRONG_LABEL = "wrong_label", "Wrong label"
    LOW_QUALITY = "low_quality", "Low quality"
    DUPLICATE = "duplicate", "Duplicate"
    UNSAFE = "unsafe", "Unsafe"
    OTHER = "other", "Other"


class AppendOnlyError(Exception):
    pass


class ReviewQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Reviews are an append-only log")

    def delete(self):
        raise AppendOnlyError("Reviews are an append-only log")


class Review(models.Model):
    """One entry of the append-only audit log: who did what to which item, with the item's state before and after.

    Every row is written by ``annotation/items/services.py`` (``item_transition``, ``items_change`` and the two log-only
    helpers there), so ``before`` and ``after`` have one shape, the item's snapshot::

        {"status": "needs_review", "text": "...", "labels": ["positive"], "version": 3}

    ``labels`` is what the item stands for at that moment: its final labels if a person decided, else the LLM's
    proposal (``Item.labels``). ``version`` is ``Item.version``; undo matches an undo's ``before.version`` with the
    undone review's ``after.version``. Two marked cases, with the same keys:

    - a second opinion on an overlap item (``after.second_opinion`` is true): ``after`` holds that reviewer's own
      verdict (status, labels, text) for agreement measures; the item kept the first review's decision and only its
      version moved;
    - a row that logs how an item was born (``filter``: a generated item the filters held back): ``before`` is ``{}``.

    A skip changes nothing, so its ``before`` and ``after`` are equal.
    """

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="reviews")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    action = models.CharField(max_length=16, choices=ReviewAction.choices)
    before = models.JSONField(default=dict, help_text="the item's snapshot before the action (see the class docstring)")
    after = models.JSONField(default=dict, help_text="the item's snapshot after the action")
    reason = models.CharField(max_length=32, blank=True)
    note = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    is_audit = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = ReviewQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # Item history and undo: WHERE item_id = ? ORDER BY id DESC.
            models.Index(fields=["item", "-id"], name="review_item_recent"),
            # Undo: WHERE project_id = ? AND user_id = ? ORDER BY id DESC LIMIT 50.
            models.Index(fields=["project", "user", "-id"], name="review_project_user_recent"),
            # The queue page's counters of the annotator's own reviews today / in the last hour (annotation/queue/services.py
            # queue_progress): WHERE project_id = ? AND user_id = ? AND created_at >= ?.
            models.Index(fields=["project", "user", "created_at"], name="review_project_user_created"),
            # Retraining trigger: human decisions since the last round, WHERE project_id = ? AND id > ? AND user_id IS
            # NOT NULL AND action IN ('accept', 'edit', 'reject') LIMIT n; routing's own rows are not in it.
            models.Index(
                fields=["project", "id"],
                condition=Q(user__isnull=False, action__in=["accept", "edit", "reject"]),
                name="review_human_decisions",
            ),
        ]

    def __str__(self):
        return f"{self.action} on item {self.item_id} by {self.user_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise AppendOnlyError("Reviews are an append-only log")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Reviews are an append-only log")


class ScoringRound(models.Model):
    """One train + rescore + route round of the selective-annotation model.

    A small project's round runs in one task. A large one (``annotation/selection/chunks.py``) goes through stages:
    ``train`` (a bounded training set, the model stored as a ``ScoringModel``), ``score`` (its ``ScoringChunk`` rows
    scored by any workers), ``route`` (scored; waiting for its routing task), ``routing`` (one task, which claimed
    the step, routes the project on the scores of this round); ``stage`` is empty when no stage is running.
    ``progress_at`` is the last sign of life: the claim, each stage's start, each chunk done. A round without one for
    ``ROUND_STALE_AFTER`` is taken for dead."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Stage(models.TextChoices):
        NONE = "", "-"
        TRAIN = "train", "Training"
        SCORE = "score", "Scoring chunks"
        ROUTE = "route", "Waiting to route"
        ROUTING = "routing", "Routing"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scoring_rounds")
    model_version = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    stage = models.CharField(max_length=8, choices=Stage.choices, default=Stage.NONE, blank=True)
    chunks = models.PositiveIntegerField(default=0)
    training_size = models.PositiveIntegerField(default=0)
    human_labels = models.PositiveIntegerField(default=0)
    items_scored = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True, help_text="cross-validated agreement, routing counts...")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "model_version"], name="scoring_round_unique_version"),
        ]


class ScoringChunk(models.Model):
    """One chunk of a chunked round's scoring: the round's open items with ids ``first_id``..``last_id`` outside its
    training set.

    Any worker may run it; a run claims it (``attempts`` + 1), scores its items, writes the ones whose shown scores
    changed, keeps every score it computed in ``scores`` and marks it done. A run that died leaves it ``running``;
    running it again computes the same scores and writes what the first run did not, so every item is scored once
    per round: ``items_scored`` is the number in ``scores``, ``items_written`` how many rows the runs wrote."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    scoring_round = models.ForeignKey(ScoringRound, on_delete=models.CASCADE, related_name="chunk_rows")
    index = models.PositiveIntegerField()
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    items_scored = models.PositiveIntegerField(default=0)
    items_written = models.PositiveIntegerField(default=0)
    # The ids and ambiguities the chunk's last run computed (numpy .npz), which routing reads.
    scores = models.BinaryField(null=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scoring_round", "index"]
        constraints = [
            models.UniqueConstraint(fields=["scoring_round", "index"], name="scoring_chunk_unique_index"),
        ]


class ScoringModel(models.Model):
    """A chunked round's trained model (featurizer, fold committees, error models), pickled by the round's training
    task for the workers that score its chunks, on any machine that reaches the database; and the training set's
    scores, which routing reads. Deleted when the round ends. Only this application's workers write it, so
    unpickling it trusts no one the database does not already trust."""

    scoring_round = models.OneToOneField(ScoringRound, on_delete=models.CASCADE, primary_key=True,
                                         related_name="stored_model")
    model = models.BinaryField()
    train_scores = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)


class ImportJob(models.Model):
    """A CSV/JSONL import: validated in full first, then written all-or-nothing, in a background task."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        VALIDATING = "validating", "Validating"
        IMPORTING = "importing", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    file_name = models.CharField(max_length=255)
    file_path = models.CharField(max_length=500, blank=True)
    format = models.CharField(max_length=8)
    options = models.JSONField(default=dict, blank=True, help_text="column mapping, duplicate policy")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{row, field, message}], capped")
    duplicate_rows = models.JSONField(
        default=list, blank=True, help_text="[{row, duplicate_of}] examples of duplicate texts, capped"
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]


class DashboardSnapshot(models.Model):
    """The cached result of one heavy dashboard computation (annotation/dashboard/services.py), one row per project and kind.

    ``pending_since`` is set when a refresh is queued and cleared when it is done, so a busy page asks once.
    """

    class Kind(models.TextChoices):
        OVERVIEW = "overview", "Counts, coverage, reviews and routing"
        QUALITY = "quality", "Diversity and agreement"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dashboard_snapshots")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    data = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            # Also serves the page's read: WHERE project_id = ? (all kinds at once).
            models.UniqueConstraint(fields=["project", "kind"], name="dashboard_snapshot_unique_kind"),
        ]


class EvaluationRun(models.Model):
    """Train on synthetic, test on real: one gold test set and the scores of classifiers trained on project data."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluation_runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    file_name = models.CharField(max_length=255)
    # [[text, label], ...]: kept in the database so that a worker on another machine can read it.
    gold = models.JSONField(default=list)
    gold_size = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="percent")
    step = models.CharField(max_length=200, blank=True)
    results = models.JSONField(default=dict, blank=True, help_text="training set -> size, accuracy, macro-F1")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Dashboard: WHERE project_id = ? ORDER BY id DESC LIMIT n.
            models.Index(fields=["project", "-id"], name="evaluation_project_recent"),
        ]


class LoginFailure(models.Model):
    """One failed sign-in, counted by annotation/accounts/throttle.py to throttle password guessing across web processes.

    Rows older than the throttle window are pruned when a new failure is written.
    """

    username = models.CharField(max_length=150)
    address = models.GenericIPAddressField(null=True, blank=True)
    # Pruning: DELETE ... WHERE created_at < ?.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            # Throttle check per account: WHERE username = ? AND created_at > ? (count, oldest).
            models.Index(fields=["username", "created_at"], name="loginfailure_user_recent"),
            # Throttle check per client address: WHERE address = ? AND created_at > ?.
            models.Index(fields=["address", "created_at"], name="loginfailure_address_recent"),
        ]


class Invitation(models.Model):
    """A single-use link that makes whoever opens it a member of ``project`` with ``role``, setting up an account if
    they have none (annotation/projects/invitations.py). Only the SHA-256 of its token is stored: the link is shown
    once, when the lead makes it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    token_hash = models.CharField(max_length=64, unique=True)
    email = models.EmailField(blank=True, help_text="Who it is meant for (a note for the lead; any holder can use it).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The members page: WHERE project_id = ? ORDER BY id DESC LIMIT n.
            models.Index(fields=["project", "-id"], name="invitation_project_recent"),
        ]

    def __str__(self):
        return f"invitation #{self.pk} to {self.project} as {self.role}"
