"""The API's request and response types; the OpenAPI schema is generated from them."""
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from ninja import Schema
from pydantic import Field

from annotation.io.exporting import EXPORT_FORMATS
from annotation.models import RejectReason, Role, RoutingMode, Source, Status
from generation.config import JobOptions
from generation.models import JobMode
from synthstudio.api.parsing import StorableInput

StatusName = Literal[tuple(Status.values)]
SourceName = Literal[tuple(Source.values)]
RoleName = Literal[tuple(Role.values)]


class Problem(Schema):
    field: str = ""
    message: str


class BulkProblem(Schema):
    index: int
    field: str
    message: str


class ErrorOut(Schema):
    """Every refusal: ``detail`` says what and where (a sentence, or the list of invalid fields of a request that does
    not match its schema); a job's options add ``problems`` (per field), a bulk create ``errors`` (per item)."""

    detail: Any
    problems: list[Problem] | None = None
    errors: list[BulkProblem] | None = None


# --- Projects ---------------------------------------------------------------------------------------------------------

class ProjectOut(Schema):
    id: int
    name: str
    description: str
    multi_label: bool
    created_at: datetime
    routing_mode: str
    review_budget: float
    review_threshold: float
    audit_rate: float
    target_accuracy: float
    review_cap: int | None
    retrain_every: int
    overlap_rate: float
    overlap_k: int
    role: str | None = Field(None, description="The caller's role in the project.")


class ProjectCreate(StorableInput):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=20_000)
    multi_label: bool = False


class ProjectUpdate(StorableInput):
    """Only the fields given change; the same bounds as the settings page."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    multi_label: bool | None = None
    routing_mode: Literal[tuple(RoutingMode.values)] | None = None
    review_budget: float | None = Field(None, ge=0, le=1)
    review_threshold: float | None = Field(None, ge=0, le=1)
    audit_rate: float | None = Field(None, ge=0, le=1)
    target_accuracy: float | None = Field(None, ge=0.5, le=1)
    review_cap: int | None = Field(None, ge=1, le=10_000_000, description="Give 0 to remove the cap.")
    retrain_every: int | None = Field(None, ge=1, le=100_000)
    overlap_rate: float | None = Field(None, ge=0, le=1)
    overlap_k: int | None = Field(None, ge=2, le=10)


class MemberOut(Schema):
    id: int
    username: str
    role: str
    created_at: datetime

    @staticmethod
    def resolve_username(obj) -> str:
        return obj.user.username


class MemberAdd(StorableInput):
    identifier: str = Field(min_length=1, max_length=254, description="Username or e-mail address.")
    role: RoleName = Role.ANNOTATOR


class MemberRole(StorableInput):
    role: RoleName


# --- Labels and attribute dimensions ----------------------------------------------------------------------------------

class LabelOut(Schema):
    id: int
    name: str
    description: str
    label_words: list[str]
    hotkey: str
    color: str
    order: int


class LabelIn(StorableInput):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=5_000)
    label_words: list[str] = Field([], max_length=100)
    hotkey: str = Field("", max_length=1)
    color: str = Field("#4c6ef5", pattern=r"^#[0-9a-fA-F]{6}$")
    order: int | None = Field(None, ge=0, le=10_000)


class MergeResult(Schema):
    merged_into: str | None
    relabelled: int


class DimensionOut(Schema):
    id: int
    name: str
    values: list[str]
    order: int


class DimensionIn(StorableInput):
    name: str = Field(min_length=1, max_length=100)
    values: list[str] = Field(min_length=1, max_length=200)


# --- Items ------------------------------------------------------------------------------------------------------------

class ItemOut(Schema):
    id: int
    text: str
    status: str
    source: str
    labels: list[str] = Field(description="Final labels if a person decided, else the LLM's proposal.")
    proposed_labels: list[str]
    final_labels: list[str]
    llm_confidence: float | None
    ambiguity: float | None
    route_reason: str
    is_audit: bool
    is_calibration: bool
    scored_round: int | None
    filter_reason: str
    generation_job_id: int | None
    version: int
    claimed_by: str | None = None
    created_at: datetime
    reviewed_at: datetime | None

    @staticmethod
    def resolve_claimed_by(obj) -> str | None:
        return obj.claimed_by.username if obj.claimed_by_id else None


class ReviewOut(Schema):
    id: int
    item_id: int
    user: str | None = None
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str
    note: str
    time_spent_ms: int | None
    is_audit: bool
    created_at: datetime

    @staticmethod
    def resolve_user(obj) -> str | None:
        return obj.user.username if obj.user_id else None


class ItemDetail(ItemOut):
    extra: dict[str, Any]
    provenance: dict[str, Any]
    llm_votes: dict[str, Any]
    model_label: str
    model_scores: dict[str, Any]
    history: list[ReviewOut]


class ItemPageOut(Schema):
    items: list[ItemOut]
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next (older) page; null on the last page.")
    prev_cursor: str | None = Field(description="Pass as ``cursor`` for the previous (newer) page.")


class BulkItem(StorableInput):
    """One item, as a JSONL line of an import: ``labels`` (gold/seed: stored accepted), ``llm_labels`` and
    ``llm_confidence`` (the LLM's proposal), and anything in ``extra`` kept with the item."""

    text: Any = Field(description="The text (a string).")
    labels: list[str] | str | None = None
    llm_labels: list[str] | str | None = None
    llm_confidence: float | None = None
    extra: dict[str, Any] = {}


class BulkCreate(StorableInput):
    items: list[BulkItem] = Field(min_length=1, max_length=10_000)
    duplicates: Literal["skip", "keep"] = "skip"


class BulkDuplicate(Schema):
    index: int
    duplicate_of: str


class BulkOut(Schema):
    created: int
    duplicates: int
    duplicate_rows: list[BulkDuplicate]


class ImportJobOut(Schema):
    id: int
    file_name: str
    format: str
    state: str
    rows_total: int
    rows_done: int
    rows_imported: int
    duplicates: int
    errors: list[dict[str, Any]]
    duplicate_rows: list[dict[str, Any]]
    created_at: datetime
    finished_at: datetime | None


# --- Review queue -----------------------------------------------------------------------------------------------------

class QueueItem(Schema):
    item: ItemDetail | None = Field(description="The item you hold now (claimed for you); null: the queue is empty.")
    second_opinion: bool = False
    lease_expires_at: datetime | None = None


class ReviewIn(StorableInput):
    action: Literal["accept", "edit", "reject", "skip"]
    version: int = Field(ge=1, description="The item's version you were shown; a stale one is refused with 409.")
    labels: list[str] | None = Field(None, max_length=100)
    text: str | None = Field(None, max_length=20_000)
    reason: Literal[tuple(["", *RejectReason.values])] = ""
    note: str = Field("", max_length=2_000)
    time_spent_ms: int | None = Field(None, ge=0, le=24 * 3600 * 1000)


class ProgressOut(Schema):
    waiting: int
    second_opinions: int
    held_by_others: int
    reviewed_today: int
    last_hour: int
    remaining: str


# --- Jobs -------------------------------------------------------------------------------------------------------------

class JobCreate(StorableInput):
    mode: Literal[tuple(JobMode.values)]
    provider: str = Field(min_length=1, max_length=32)
    connection_id: int | None = Field(None, description="An LLM connection of the project; null: the default.")
    model_name: str = Field("", max_length=200)
    options: JobOptions = JobOptions()


class JobOut(Schema):
    id: int
    mode: str
    provider: str
    model_name: str
    status: str
    cancel_requested: bool
    requested: int
    produced: int
    parsed: int
    filtered: int
    filtered_by_reason: dict[str, Any]
    failed: int
    failed_by_reason: dict[str, Any]
    malformed: int
    requests_made: int
    retries: int
    batches_done: int
    batches_total: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal | None
    outcome: str
    config: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobEventOut(Schema):
    id: int
    kind: str
    message: str
    data: dict[str, Any]
    created_at: datetime


class JobItemOut(Schema):
    id: int
    text: str
    status: str
    source: str
    proposed_labels: list[str]
    llm_confidence: float | None
    filter_reason: str


class JobOutcomes(Schema):
    outcome: str
    items: list[JobItemOut]
    events: list[JobEventOut]


# --- Routing ----------------------------------------------------------------------------------------------------------

class RoundOut(Schema):
    id: int
    model_version: int
    state: str
    training_size: int
    human_labels: int
    items_scored: int
    metrics: dict[str, Any]
    error: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None


class RoundRequested(Schema):
    queued: bool
    detail: str


class Interval(Schema):
    low: float
    high: float


class EstimatesOut(Schema):
    audits: int
    audits_kept: int
    human_reviewed: int
    auto_accepted: int
    auto_accepted_accuracy: float | None
    auto_accepted_interval: Interval | None
    dataset_accuracy: float | None
    dataset_interval: Interval | None
    target_accuracy: float


class RoutingOut(Schema):
    state: dict[str, Any] = Field(description="Project.routing_state: what the latest round decided.")
    headline: str | None
    llm: str | None
    unreliable: bool
    certified: bool
    auto_accept_paused: bool
    auto_accept_paused_reason: str
    reviews_since_last_round: int


# --- Export -----------------------------------------------------------------------------------------------------------

class ExportQuery(Schema):
    format: Literal[tuple(EXPORT_FORMATS)] = "csv"
    include: Literal["verified", "all"] = "verified"
    status: list[StatusName] = []
    source: SourceName | Literal[""] = ""
    label: str = Field("", max_length=100)
    created_from: date | None = None
    created_to: date | None = None
    provenance: bool = False
