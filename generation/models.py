"""Generation and labelling jobs (their configuration, state, counters and log), and the LLM connections they use with
what a probe found each endpoint does."""
from decimal import Decimal

from django.conf import settings
from django.db import models

from annotation.models import Project
from generation.providers import provider_display_name

COST_DIGITS, COST_PLACES = 12, 6


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


class LLMConnection(models.Model):
    """A named OpenAI-compatible endpoint of a project (generation/endpoints.py). The key is never stored: only the
    name of the environment variable that holds it, from the operator's ``LLM_KEY_VARIABLES``."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    base_url = models.CharField(max_length=500)
    model = models.CharField(max_length=200)
    key_variable = models.CharField(max_length=100, blank=True)
    # The project's choice when a lead starts a job; none marked: the deployment's default.
    is_default = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="llmconnection_unique_name"),
            models.UniqueConstraint(fields=["project"], condition=models.Q(is_default=True),
                                    name="llmconnection_one_default"),
        ]

    def __str__(self):
        return self.name


class EndpointProbe(models.Model):
    """What the latest capability probe (generation/probe.py) found an endpoint does, keyed by the endpoint's
    fingerprint (base URL, model, key variable): connections to the same server and model share it."""

    fingerprint = models.CharField(max_length=64, unique=True)
    base_url = models.CharField(max_length=500, blank=True)
    model = models.CharField(max_length=200, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    # Set while a worker probes; a probe older than probe.PROBE_TIMEOUT counts as dead and may be taken over.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    profile = models.JSONField(default=dict, blank=True)

    @property
    def pending(self) -> bool:
        return self.requested_at is not None and (self.finished_at is None or self.finished_at < self.requested_at)


class GenerationJob(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    mode = models.CharField(max_length=32, choices=JobMode.choices)
    provider = models.CharField(max_length=32, default="offline")
    # The connection it was started with (its endpoint as it was then is in ``config``); null: the default.
    connection = models.ForeignKey(LLMConnection, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="jobs")
    model_name = models.CharField(max_length=200, blank=True)
    # Everything else the lead chose and what the job read from the project: generation.config.JobConfig as JSON.
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
    retries = models.PositiveIntegerField(
        default=0, help_text="provider calls repeated after 429/5xx/timeouts, or once after a refused parameter")
    batches_done = models.PositiveIntegerField(default=0)
    batches_total = models.PositiveIntegerField(default=0)

    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_PLACES, null=True, blank=True)
    # The most the column holds: a job's cost stops there instead of overflowing it (and failing the job).
    COST_CAP = Decimal(10) ** (COST_DIGITS - COST_PLACES) - Decimal(10) ** -COST_PLACES

    # The endpoint the job ran against and how it asked (format, cap field, n, logprobs, concurrency, adaptations).
    endpoint = models.JSONField(default=dict, blank=True)
    # One sentence: what the job stored, and the dominant reason for what it did not.
    outcome = models.CharField(max_length=1000, blank=True)

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

    @property
    def provider_display_name(self) -> str:
        return provider_display_name(self.provider)

    @property
    def cost_capped(self) -> bool:
        return self.cost_usd is not None and self.cost_usd >= self.COST_CAP


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
