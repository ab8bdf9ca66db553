"""Generation and labelling jobs: their configuration, state, counters and log."""
from django.conf import settings
from django.db import models

from annotation.models import Project


class JobMode(models.TextChoices):
    LABEL_CONDITIONED = "label_conditioned", "Label-conditioned generation"
    ATTRIBUTE_CONDITIONED = "attribute_conditioned", "Attribute-conditioned generation"
    LABEL_POOL = "label_pool", "Label an unlabelled pool (verbalizer)"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class GenerationJob(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    mode = models.CharField(max_length=32, choices=JobMode.choices)
    provider = models.CharField(max_length=32, default="offline")
    model_name = models.CharField(max_length=200, blank=True)
    # Everything else the lead chose: count, conditions, exemplars, temperature, steps, filters, prompt template.
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)

    requested = models.PositiveIntegerField(default=0)
    produced = models.PositiveIntegerField(default=0, help_text="items stored for review or routing")
    parsed = models.PositiveIntegerField(default=0, help_text="candidates parsed from model output")
    filtered = models.PositiveIntegerField(default=0)
    filtered_by_reason = models.JSONField(default=dict, blank=True)
    failed = models.PositiveIntegerField(default=0, help_text="requested samples never obtained (errors, bad output)")
    failed_by_reason = models.JSONField(default=dict, blank=True)
    malformed = models.PositiveIntegerField(default=0, help_text="model answers that failed validation")
    requests_made = models.PositiveIntegerField(default=0, help_text="provider calls, retries not included")
    retries = models.PositiveIntegerField(default=0, help_text="provider calls repeated after 429/5xx/timeouts")
    batches_done = models.PositiveIntegerField(default=0)
    batches_total = models.PositiveIntegerField(default=0)

    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    celery_task_id = models.CharField(max_length=64, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, help_text="worker that holds the job")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.get_mode_display()} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES


class JobEvent(models.Model):
    """The job's log: state changes, batch outcomes and errors (raw model output kept for inspection)."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The job page's log, newest first: WHERE job_id = ? [AND kind IN (...)] ORDER BY id DESC LIMIT n
            # (generation/selectors.py job_events).
            models.Index(fields=["job", "-id"], name="jobevent_job_recent"),
        ]


class GenerationBatch(models.Model):
    """One batch of a job; its unique key makes a retried batch a no-op rather than a source of duplicates."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    done = models.BooleanField(default=False)
    outcome = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="generation_batch_unique_index")]


class NearDuplicateKey(models.Model):
    """One locality-sensitive-hashing band of an item's MinHash signature (generation/filters.py).

    Items that share a band key are near-duplicate candidates; keeping the keys in a table makes the check against a
    whole project one indexed query instead of a scan over its texts.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # A plain id, as on Item.generation_job_id, so annotation never depends on this table.
    item_id = models.BigIntegerField()
    band = models.BigIntegerField()

    class Meta:
        indexes = [
            # Near-duplicate lookup: WHERE project_id = ? AND band IN (...).
            models.Index(fields=["project", "band"], name="neardup_project_band"),
        ]
        constraints = [
            # Also serves "is this item indexed yet": WHERE item_id = ? (its leading column).
            models.UniqueConstraint(fields=["item_id", "band"], name="neardup_unique_item_band"),
        ]
